"""A tiny random Qwen2.5-VL checkpoint built offline: config, weights, on-the-spot BPE, chat template.

For tests and the CPU smoke run (`pyvision-train tiny-model OUT`); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen2.5-VL style: any role renders as `<|im_start|>{role}\n...<|im_end|>\n`; `tool` messages as
# Qwen's `<tool_response>` user turns; tool calls as Hermes `<tool_call>` JSON.
CHAT_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n# Tools\n<tools>\n{% for tool in tools %}{{ tool | tojson }}\n"
    "{% endfor %}</tools>\nCall a tool as <tool_call>\n{\"name\": <name>, \"arguments\": <args>}\n"
    "</tool_call><|im_end|>\n{% endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'tool' %}{{ '<|im_start|>user\n<tool_response>\n' }}"
    "{%- else %}{{ '<|im_start|>' + message.role + '\n' }}{%- endif %}"
    "{%- if message.content is string %}{{ message.content }}{%- else %}"
    "{%- for part in message.content %}"
    "{%- if part.type == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part.type == 'text' %}{{ part.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{%- for call in message.tool_calls or [] %}"
    "{{ '\n<tool_call>\n{\"name\": \"' + call.function.name + '\", \"arguments\": ' }}"
    "{{- call.function.arguments | tojson }}{{ '}\n</tool_call>' }}"
    "{%- endfor %}"
    "{%- if message.role == 'tool' %}{{ '\n</tool_response>' }}{%- endif %}"
    "{%- if not (loop.last and continue_final_message) %}{{ '<|im_end|>\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}"
)

_CORPUS = [
    "<code>\n```python\nprint(image_clue_0.size)\nplt.imshow(image_clue_0)\nplt.show()\n```\n</code>",
    "<answer>\n\\boxed{A}\n</answer> The answer is 12.",
    "<interpreter>Text Result:\n(64, 48)</interpreter> How many marks are in the image?",
]


def build_tiny_qwen(
    folder: Path,
    *,
    corpus: Sequence[str] | None = None,
    vocab_size: int = 600,
    min_frequency: int = 0,
    by_lines: bool = False,
    split_numbers: bool = False,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    vision_depth: int = 2,
    chat_template: str = CHAT_TEMPLATE,
) -> Path:
    """Save a random tiny Qwen2.5-VL (~70k parameters by default) with its processor into
    `folder`; return it.

    The byte-level BPE is trained on the spot on `corpus` (default: a few protocol lines), with
    the Qwen special tokens; `by_lines` pre-tokenizes by whole lines, so a line seen often in the
    corpus can become one token (a long code cell a few dozen tokens); `split_numbers` keeps every
    run of digits a token of its own (so `ANSWER: 5` in an observation and `\\boxed{5}` in an
    answer share the token `5`, which a model can copy). The weights come from a fixed seed: the
    same arguments give the same model.
    """
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    bpe = Tokenizer(models.BPE())
    splits = [pre_tokenizers.Split(Regex(r"[^\n]*\n|[^\n]+"), behavior="isolated")] if by_lines else []
    if split_numbers:
        splits.append(pre_tokenizers.Split(Regex(r"\d+"), behavior="isolated"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not by_lines)
    bpe.pre_tokenizer = pre_tokenizers.Sequence([*splits, byte_level]) if splits else byte_level
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_CORPUS * 20 if corpus is None else corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    pixels = {"min_pixels": 28 * 28, "max_pixels": 28 * 28 * 16}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=chat_template,
    )
    token = tokenizer.convert_tokens_to_ids
    half = hidden // heads // 2  # the rotary sections cover half the head size
    third = (half + 1) // 3
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2), "max_position_embeddings": 8192,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [half - 2 * third, third, third]},
            "bos_token_id": None, "eos_token_id": token("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"depth": vision_depth, "hidden_size": 16, "intermediate_size": 32,
                       "num_heads": 2, "out_hidden_size": hidden,
                       "fullatt_block_indexes": [vision_depth - 1], "window_size": 56},
        image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    torch.random.set_rng_state(generator_state)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
