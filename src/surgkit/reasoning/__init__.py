"""surgkit.reasoning: surgical VQA/VQLA with three-level chain of thought (Surgery-R1, Surg-R1).

Modules (see docs/reasoning.md):

- ``records``: the unified JSONL record (one question about one frame), atomic JSONL I/O.
- ``boxes``: the internal box frame and converters (VQLA legacy, normalised, Qwen2-VL, Qwen2.5-VL).
- ``builders`` / ``synth_adapter``: records from the dataset readers and from the synthetic world.
- ``cot`` / ``lexicon``: deterministic three-level chains and their validator.
- ``render``: prompts and targets (answer_only, sentence, cot) as pure functions.
- ``parsing`` / ``rewards``: strict parsing and the GRPO rewards (TRL signature).
- ``train`` / ``selfimprove``: SFT, GRPO and stage-4 self-improvement on TRL + PEFT + Accelerate.
- ``evaluate`` / ``runners``: strict metrics, Arena score, model/endpoint/prediction-file evaluation.
- ``vlm``: loading HF VLMs and the embedded tiny Qwen2-VL; ``demo``: the demo step.

Heavy dependencies (torch, transformers, trl, peft, datasets) are imported inside functions.
"""
