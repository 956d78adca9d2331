"""The tiny offline Qwen2.5-VL's tokenizer options: whole lines as tokens, numbers kept apart."""

from __future__ import annotations

import pytest

pytest.importorskip("trl", reason="needs trl: pip install 'pyvision-env[train]'")
pytest.importorskip("torchvision", reason="the Qwen2.5-VL processor needs torchvision")

CORPUS = [f"ANSWER: {n}\n<answer>\n\\boxed{{{n}}}\n</answer>\nplt.show()\n" for n in range(3, 10)] * 4


def _pieces(folder, text):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    return [tokenizer.decode([i]) for i in ids]


def test_by_lines_makes_a_frequent_line_one_token(tmp_path):
    from pyvision_train.tiny_model import build_tiny_qwen

    folder = build_tiny_qwen(tmp_path, corpus=CORPUS, vocab_size=400, min_frequency=2, by_lines=True)
    assert _pieces(folder, "plt.show()\nANSWER: 5\n") == ["plt.show()\n", "ANSWER: 5\n"]


def test_split_numbers_lets_an_answer_share_the_observation_number_token(tmp_path):
    from pyvision_train.tiny_model import build_tiny_qwen

    folder = build_tiny_qwen(tmp_path, corpus=CORPUS, vocab_size=400, min_frequency=2, by_lines=True,
                             split_numbers=True)
    assert _pieces(folder, "ANSWER: 5\n") == ["ANSWER: ", "5", "\n"]
    assert _pieces(folder, "\\boxed{5}\n") == ["\\boxed{", "5", "}\n"]
    assert _pieces(folder, "plt.show()\n") == ["plt.show()\n"]
