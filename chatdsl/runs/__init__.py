"""runs: one request per input row, many at a time (see chatdsl.runs.rows and chatdsl.runs.pool)."""
