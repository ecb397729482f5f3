"""How ``tests/docs/pages.py`` reads a page's code blocks and their marks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.pages import ROOT, blocks, template_file

PAGE = """# A page

<!-- snippet: no-mypy -->
```python
x: int = "on purpose"
```

- a list item:

  ```python
  print("indented")
  ```

<!-- snippet: needs-mistralai -->
```python
import mistralai
```

```toml
# prompts/base.toml
model = "m"
```

```sh
echo not run
```
"""


def test_blocks_marks_and_template_files(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE, encoding="utf-8")
    found = blocks(page)
    expected = [("python", 4), ("python", 10), ("python", 15), ("toml", 19), ("sh", 24)]
    assert [(b.lang, b.line) for b in found] == expected
    mypy_off, indented, sdk, toml, shell = found
    assert (mypy_off.runs, mypy_off.type_checked) == (True, False)
    assert (indented.code, indented.runs, indented.type_checked) == ('print("indented")\n', True, True)
    assert (sdk.needs, sdk.runs, sdk.type_checked) == (("mistralai",), True, False)
    assert template_file(toml) == "prompts/base.toml"
    assert template_file(mypy_off) is None
    assert not shell.runs


def test_an_unknown_mark_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- snippet: no-typecheck -->\n```python\npass\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no-typecheck"):
        blocks(page)


def test_the_root_is_the_checkout() -> None:
    assert (ROOT / "setup.cfg").is_file()
