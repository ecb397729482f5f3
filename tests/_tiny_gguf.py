"""Write a tiny random-weight llama model in GGUF, for the llama.cpp integration tier (no download).

Run with an interpreter that has ``gguf`` and ``numpy``: ``python tests/_tiny_gguf.py OUT.gguf``.
One transformer block, 64-wide, a SentencePiece-style vocabulary of the 256 byte tokens plus a few
words, and a ChatML chat template: the answers are gibberish, but every byte of the server's wire
format — plain answers, streams, usage, errors — is real llama.cpp.
"""

from __future__ import annotations

import sys


def write(path: str) -> None:
    import numpy as np
    from gguf import GGUFWriter

    rng = np.random.default_rng(0)
    n_embd, n_ff, n_head, n_ctx = 64, 128, 4, 512
    words = ["▁the", "▁a", "▁Paris", "▁is", "▁capital", "▁of", "▁France", ".", "▁hello", "▁world"]
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tokens += [f"<0x{b:02X}>" for b in range(256)] + words
    types = [2, 3, 3, 3, 3] + [6] * 256 + [1] * len(words)  # unknown, control, byte, normal
    scores = [0.0] * 261 + [-float(i) for i in range(len(words))]
    n_vocab = len(tokens)

    writer = GGUFWriter(path, "llama")
    writer.add_name("chatdsl-tiny")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(4)
    writer.add_unk_token_id(0)
    writer.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )

    def tensor(*shape: int) -> object:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer.add_tensor("token_embd.weight", tensor(n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", tensor(n_vocab, n_embd))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", tensor(n_embd, n_embd))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", tensor(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_up.weight", tensor(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_down.weight", tensor(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    write(sys.argv[1])
