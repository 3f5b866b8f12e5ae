"""``surgkit reason``: build records, validate chains, train (SFT, GRPO, self-improvement), evaluate."""

from __future__ import annotations

from pathlib import Path

import typer

from surgkit.utils.cli_options import launch_options, main_process_output
from surgkit.utils.launch import LaunchOptions

sub = typer.Typer(
    help="Surgical VQA/VQLA with three-level chain of thought: records, SFT → GRPO → self-improvement, strict eval.",
    no_args_is_help=True,
)

ROOT_HELP = "Folder the records' image paths are relative to."
DEVICE_HELP = "auto, cpu or cuda (under `accelerate launch` the launcher decides)."
BOX_FRAME_HELP = (
    "Box frame of prompts/answers: norm1000 (Qwen2-VL), input (Qwen2.5-VL model-input pixels), norm, pixel."
)
MIN_PIXELS_HELP = "Processor min pixels per image (default: the model's processor; set on it when given)."
MAX_PIXELS_HELP = (
    "Processor max pixels per image (Surg-R1 serves Qwen2.5-VL-7B with 1003520; default: the processor's)."
)
MERGE_HELP = "LoRA: also write the merged full model to OUT/model (the adapter is always in OUT/adapter)."
DTYPE_HELP = "Weights dtype when loading: auto (as saved), bfloat16, float32."
GC_HELP = "Gradient checkpointing (large models: less memory, ~30 % slower)."


def _echo_json(obj) -> None:
    from surgkit.utils.io import to_json

    typer.echo(to_json(obj))


@sub.command("build")
def build_cmd(
    source: str = typer.Option(
        ...,
        "--from",
        help="endovis18_vqla, endovis17_vqla, cholect50, cholec80, endoscapes, copesd, cholec80_boxes or synth.",
    ),
    root: Path = typer.Option(..., help="Dataset root (for synth: the world folder)."),
    out: Path = typer.Option(..., help="Records JSONL to write."),
    cot: bool = typer.Option(False, "--cot", help="Attach validated template chains (reasoning field)."),
    mcq: bool = typer.Option(False, "--mcq", help="Add multiple-choice copies of phase and action records."),
    stride: int = typer.Option(1, help="Keep every N-th labelled frame (CholecT50)."),
    stride_s: float = typer.Option(30.0, help="Seconds between sampled Cholec80 frames."),
    frames_dir: Path = typer.Option(
        None, help="Where decoded Cholec80 frames go (default ROOT/surgkit_frames)."
    ),
    vqla_box_size: str = typer.Option(
        None,
        help="WxH of the frame VQLA label boxes refer to when it differs from the images (e.g. 1280x1024).",
    ),
) -> None:
    """Turn a dataset (or the synthetic world) into unified reasoning records."""
    from surgkit.reasoning.pipeline import build_records_file, parse_size

    res = build_records_file(
        source, root, out, cot, stride, frames_dir, parse_size(vqla_box_size), stride_s, mcq=mcq
    )
    typer.echo(f"wrote {res['written']} records to {out}: {res['by_task']}")
    for item, why in res["skipped"][:20]:
        typer.echo(f"skipped {item}: {why}", err=True)
    if len(res["skipped"]) > 20:
        typer.echo(f"... {len(res['skipped']) - 20} more skipped", err=True)
    for rid, issues in res["template_failures"][:10]:
        typer.echo(f"template chain rejected for {rid}: {issues}", err=True)


@sub.command("validate")
def validate_cmd(
    records: Path = typer.Argument(..., help="Records JSONL."),
    root: Path = typer.Option(None, help=ROOT_HELP),
    check_images: bool = typer.Option(False, help="Also check that every image exists."),
) -> None:
    """Check every line and every chain (stored or template); exit 1 if anything is wrong."""
    from surgkit.reasoning.pipeline import validate_records_file

    res = validate_records_file(records, root, check_images)
    for p in res["line_errors"] + res["chain_problems"]:
        typer.echo(p, err=True)
    typer.echo(
        f"{res['records']} records, {res['chains_valid']} valid chains, {len(res['line_errors'])} line errors"
    )
    if res["line_errors"] or res["chain_problems"]:
        raise typer.Exit(1)


@sub.command("tiny-model")
def tiny_cmd(
    records: Path = typer.Option(..., help="Records JSONL (its texts train the tokenizer)."),
    out: Path = typer.Option(..., help="Model folder to write."),
    kind: str = typer.Option(
        "qwen2-vl", help="qwen2-vl | qwen2.5-vl (random init) | clip (a trained CLIP as frozen vision tower)."
    ),
    vision_tower: Path = typer.Option(
        None, help="CLIP model folder for --kind clip (e.g. a grounding tiny CLIP)."
    ),
    image_pixels: int = typer.Option(56 * 56, help="Input pixels per image (a multiple of 28x28)."),
    seed: int = typer.Option(0),
) -> None:
    """Create an embedded tiny VLM with a tokenizer trained on the records (reasoning tags kept as text)."""
    from surgkit.reasoning.pipeline import make_tiny_model

    tower = str(vision_tower) if vision_tower else None
    path = make_tiny_model(records, out, seed, kind=kind, vision_tower=tower, image_pixels=image_pixels)
    typer.echo(f"tiny model: {path}")


def _common_train(records: Path, split: str, allow_leakage: bool, limit: int):
    from surgkit.reasoning.pipeline import load_train_records

    return load_train_records(records, split, allow_leakage, limit)


GLOBAL_BATCH_HELP = (
    "Global batch: samples per optimizer step over all processes and --grad-accum micro-batches "
    "(each process takes batch / (processes x grad-accum))."
)


@sub.command("sft")
@launch_options
def sft_cmd(
    model: Path = typer.Option(..., help="HF vision-language model folder (Qwen2-VL family)."),
    records: Path = typer.Option(..., help="Records JSONL."),
    root: Path = typer.Option(None, help=ROOT_HELP),
    out: Path = typer.Option(..., help="Run folder (checkpoints/, model/, train_log.json)."),
    stage: str = typer.Option(
        "cot", help="'simple' (Stage 1, sentence targets) or 'cot' (Stage 2 cold start)."
    ),
    epochs: float = typer.Option(3.0),
    max_steps: int = typer.Option(-1, help="Stop after N steps (-1: epochs decide)."),
    lr: float = typer.Option(5e-5),
    batch_size: int = typer.Option(1, help=GLOBAL_BATCH_HELP),
    lora: bool = typer.Option(True, help="LoRA r32/α64 all-linear (off: train all weights)."),
    split: str = typer.Option("train", help="Records split to train on."),
    allow_leakage: bool = typer.Option(False, help="Allow training on test records."),
    limit: int = typer.Option(0, help="Use only the first N records (0: all)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    resume: bool = typer.Option(False, help="Resume from the newest checkpoint in OUT."),
    box_frame: str = typer.Option("norm1000", help=BOX_FRAME_HELP),
    min_pixels: int = typer.Option(None, help=MIN_PIXELS_HELP),
    max_pixels: int = typer.Option(None, help=MAX_PIXELS_HELP),
    merge_lora: bool = typer.Option(False, help=MERGE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    gradient_checkpointing: bool = typer.Option(False, help=GC_HELP),
    launch: LaunchOptions = None,
) -> None:
    """Stage 1/2: supervised fine-tuning with TRL SFTTrainer.

    Multi-GPU / large models: accelerate launch --config_file $(surgkit recipes path deepspeed-zero3) -m surgkit reason sft ...
    """
    from surgkit.reasoning.train import SFTSettings, sft, with_launch

    recs = _common_train(records, split, allow_leakage, limit)
    s = SFTSettings(
        stage=stage,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=lr,
        batch_size=batch_size,
        lora=lora,
        box_frame=box_frame,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        merge_lora=merge_lora,
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
    )
    typer.echo(f"model: {sft(model, recs, root, out, with_launch(s, launch), device, resume)}")


def _grpo_settings(**kw):
    from surgkit.reasoning.pipeline import parse_weights
    from surgkit.reasoning.rewards import CoherenceConfig
    from surgkit.reasoning.train import GRPOSettings

    weights = parse_weights(kw.pop("rewards"))
    coh = CoherenceConfig(
        joint=kw.pop("coherence_joint"),
        quadrant=kw.pop("coherence_quadrant"),
        reasoning=kw.pop("coherence_reasoning"),
    )
    s = GRPOSettings(coherence=coh, **kw)
    if weights is not None:
        s.rewards = weights
    return s


@sub.command("grpo")
@launch_options
def grpo_cmd(
    model: Path = typer.Option(..., help="Model folder (usually the Stage-2 SFT output)."),
    records: Path = typer.Option(..., help="Records JSONL (answer-only ground truth is used)."),
    root: Path = typer.Option(None, help=ROOT_HELP),
    out: Path = typer.Option(..., help="Run folder."),
    rewards: str = typer.Option(
        None, help="name=weight,... (default format_hierarchical=0.5,accuracy=1,iou=1,coherence=1)."
    ),
    beta: float = typer.Option(0.04, help="KL coefficient (0: no reference model)."),
    loss_type: str = typer.Option("dapo", help="TRL loss_type: dapo, grpo, dr_grpo, bnpo, ..."),
    scale_rewards: str = typer.Option(
        "group", help="Advantage scaling: group (divide by the group's reward std), batch, none (Dr. GRPO)."
    ),
    screen_min_spread: float = typer.Option(
        None,
        help="Before training, sample --num-generations completions per prompt at --temperature with the "
        "starting model and keep the prompts whose total reward varies by more than this (DAPO dynamic "
        "sampling, once); default: no screen.",
    ),
    num_generations: int = typer.Option(6),
    batch_size: int = typer.Option(6, help=GLOBAL_BATCH_HELP + " A multiple of --num-generations."),
    temperature: float = typer.Option(0.9),
    lr: float = typer.Option(1e-5),
    max_completion_length: int = typer.Option(1024),
    max_steps: int = typer.Option(-1),
    epochs: float = typer.Option(1.0),
    lora: bool = typer.Option(True, help="LoRA r8/α32 all-linear."),
    coherence_joint: bool = typer.Option(True, help="Coherence term 1: answer right AND IoU ≥ 0.5."),
    coherence_quadrant: bool = typer.Option(True, help="Coherence term 2: box quadrant = location answer."),
    coherence_reasoning: bool = typer.Option(
        False, help="Coherence term 3: positions in <think> agree with the box."
    ),
    split: str = typer.Option("train"),
    allow_leakage: bool = typer.Option(False),
    limit: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    resume: bool = typer.Option(False),
    box_frame: str = typer.Option("norm1000", help=BOX_FRAME_HELP),
    min_pixels: int = typer.Option(None, help=MIN_PIXELS_HELP),
    max_pixels: int = typer.Option(None, help=MAX_PIXELS_HELP),
    merge_lora: bool = typer.Option(False, help=MERGE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    gradient_checkpointing: bool = typer.Option(False, help=GC_HELP),
    use_vllm: bool = typer.Option(
        False, help="Generate GRPO samples with vLLM (GPU; pip install 'surgkit[vllm]')."
    ),
    vllm_mode: str = typer.Option(
        "colocate", help="vLLM mode: colocate (same GPUs) or server (trl vllm-serve)."
    ),
    launch: LaunchOptions = None,
) -> None:
    """Stage 3: GRPO with rule-based rewards (TRL GRPOTrainer).

    Multi-GPU / large models: accelerate launch --config_file $(surgkit recipes path deepspeed-zero3) -m surgkit reason grpo ...
    """
    from surgkit.reasoning.train import grpo, with_launch

    recs = _common_train(records, split, allow_leakage, limit)
    s = _grpo_settings(
        rewards=rewards,
        beta=beta,
        loss_type=loss_type,
        scale_rewards=scale_rewards,
        num_generations=num_generations,
        batch_size=batch_size,
        temperature=temperature,
        learning_rate=lr,
        max_completion_length=max_completion_length,
        max_steps=max_steps,
        epochs=epochs,
        lora=lora,
        coherence_joint=coherence_joint,
        coherence_quadrant=coherence_quadrant,
        coherence_reasoning=coherence_reasoning,
        box_frame=box_frame,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        merge_lora=merge_lora,
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
        use_vllm=use_vllm,
        vllm_mode=vllm_mode,
    )
    if screen_min_spread is not None:
        recs = _screen(model, recs, root, s, screen_min_spread, device)
    typer.echo(f"model: {grpo(model, recs, root, out, with_launch(s, launch), device, resume)}")


def _screen(model: Path, recs: list, root, s, min_spread: float, device: str) -> list:
    from surgkit.errors import SurgkitError
    from surgkit.reasoning.informative import ScreenSettings, informative_prompts
    from surgkit.reasoning.scoring import BoxSettings
    from surgkit.reasoning.vlm import resolve_device

    screen = ScreenSettings(
        generations=s.num_generations,
        temperature=s.temperature,
        max_new_tokens=s.max_completion_length,
        min_spread=min_spread,
        seed=s.seed,
    )
    box = BoxSettings(frame=s.box_frame, min_pixels=s.min_pixels, max_pixels=s.max_pixels)
    kept, stats = informative_prompts(model, recs, root, screen, resolve_device(device), s.rewards, box)
    if not kept:
        raise SurgkitError(
            f"screen: no prompt's {s.num_generations} sampled completions differ in reward by more than "
            f"{min_spread} (sampled mean reward {stats['sampled_mean_reward']:.3f}): GRPO would not learn; "
            "lower --screen-min-spread, raise --temperature or train the model further first"
        )
    typer.echo(
        f"screen: kept {stats['kept']} of {stats['candidates']} prompts (reward spread > {min_spread})"
    )
    return kept


@sub.command("self-improve")
@launch_options
def self_improve_cmd(
    model: Path = typer.Option(..., help="Model folder (after Stage 3)."),
    records: Path = typer.Option(...),
    root: Path = typer.Option(None, help=ROOT_HELP),
    out: Path = typer.Option(...),
    rounds: int = typer.Option(1),
    samples: int = typer.Option(4, help="Chains sampled per question."),
    temperature: float = typer.Option(0.9),
    max_new_tokens: int = typer.Option(512),
    sft_steps: int = typer.Option(-1),
    grpo_steps: int = typer.Option(-1),
    sft_lr: float = typer.Option(5e-5),
    grpo_lr: float = typer.Option(1e-5),
    batch_size: int = typer.Option(4, help="SFT batch size and chain-sampling batch size."),
    num_generations: int = typer.Option(6),
    max_completion_length: int = typer.Option(1024, help="GRPO completion limit."),
    lora: bool = typer.Option(True),
    split: str = typer.Option("train"),
    allow_leakage: bool = typer.Option(False),
    limit: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    box_frame: str = typer.Option("norm1000", help=BOX_FRAME_HELP),
    launch: LaunchOptions = None,
) -> None:
    """Stage 4: sample chains, keep validated ones (fallback: template), SFT + GRPO again, R rounds.

    Under accelerate launch / torchrun the chains are sampled on shards of the questions and gathered."""
    from surgkit.reasoning.selfimprove import SelfImproveSettings, self_improve
    from surgkit.reasoning.train import GRPOSettings, SFTSettings, with_launch

    recs = _common_train(records, split, allow_leakage, limit)
    final, hist = self_improve(
        model,
        recs,
        root,
        out,
        SelfImproveSettings(
            rounds=rounds,
            samples=samples,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        ),
        with_launch(
            SFTSettings(
                max_steps=sft_steps,
                lora=lora,
                learning_rate=sft_lr,
                batch_size=batch_size,
                box_frame=box_frame,
            ),
            launch,
        ),
        with_launch(
            GRPOSettings(
                max_steps=grpo_steps,
                lora=lora,
                learning_rate=grpo_lr,
                num_generations=num_generations,
                batch_size=num_generations,
                max_completion_length=max_completion_length,
                box_frame=box_frame,
            ),
            launch,
        ),
        device,
    )
    for h in hist:
        typer.echo(f"round {h['round']}: accepted {h['accepted_self']}/{h['questions']} self chains")
    typer.echo(f"model: {final}")


@sub.command("eval")
@main_process_output
def eval_cmd(
    records: Path = typer.Option(..., help="Records JSONL."),
    out: Path = typer.Option(..., help="Folder for predictions.jsonl and metrics.json."),
    root: Path = typer.Option(None, help=ROOT_HELP),
    model: Path = typer.Option(None, help="Local HF VLM folder (or a LoRA adapter folder)."),
    predictions: Path = typer.Option(None, help="JSONL of {id, completion} (e.g. answers of an API model)."),
    endpoint: str = typer.Option(None, help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1."),
    endpoint_model: str = typer.Option("default", help="Model name sent to the endpoint."),
    concurrency: int = typer.Option(8, min=1, help="Endpoint requests in flight at once."),
    retries: int = typer.Option(
        4, min=0, help="Endpoint retries per request (429/5xx/timeouts), with backoff."
    ),
    timeout: float = typer.Option(60.0, help="Endpoint timeout per request (s)."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the endpoint key."),
    split: str = typer.Option("test", help="Records split to evaluate ('all' for every record)."),
    lenient: bool = typer.Option(
        False, help="Add the Surg-R1 substring-match score as a labelled secondary column."
    ),
    answer_mode: str = typer.Option(
        "auto", help="'auto' (plain text if no <answer> tag) or 'tags' (tag required)."
    ),
    headline: str = typer.Option("surgvlm", help="Arena headline map: surgvlm or surg-r1."),
    limit: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    max_new_tokens: int = typer.Option(
        512, help="Token limit per answer (an answer cut there is unparseable)."
    ),
    batch_size: int = typer.Option(16, help="Local model: answers generated together (KV cache)."),
    reasoning: bool = typer.Option(True, help="Ask for the three-level chain (off: answer briefly)."),
    box_frame: str = typer.Option("norm1000", help=BOX_FRAME_HELP),
    min_pixels: int = typer.Option(None, help=MIN_PIXELS_HELP),
    max_pixels: int = typer.Option(None, help=MAX_PIXELS_HELP),
    overwrite: bool = typer.Option(
        False, help="OUT holds another model's or other settings' predictions: discard them and start over."
    ),
) -> None:
    """Strict evaluation of a model, a predictions file or an endpoint; prints metrics and the Arena score."""
    from surgkit.errors import SurgkitError
    from surgkit.reasoning.endpoint import EndpointSettings
    from surgkit.reasoning.evaluate import SURG_R1_HEADLINE, SURGVLM_HEADLINE
    from surgkit.reasoning.generation import GenerationSettings
    from surgkit.reasoning.records import read_records
    from surgkit.reasoning.runners import run_eval
    from surgkit.reasoning.scoring import BoxSettings

    recs = [r for r in read_records(records) if split == "all" or r.split == split]
    recs = recs[:limit] if limit > 0 else recs
    if not recs:
        raise SurgkitError(f"{records}: no records with split '{split}'")
    hmap = {"surgvlm": SURGVLM_HEADLINE, "surg-r1": SURG_R1_HEADLINE}.get(headline)
    if hmap is None:
        raise SurgkitError(f"unknown headline map '{headline}' (surgvlm or surg-r1)")
    ep = None
    if endpoint is not None:
        ep = EndpointSettings(
            url=endpoint,
            model=endpoint_model,
            timeout=timeout,
            max_tokens=max_new_tokens,
            concurrency=concurrency,
            retries=retries,
            api_key_env=api_key_env,
        )
    m = run_eval(
        recs,
        out,
        root,
        model=model,
        predictions=predictions,
        endpoint=ep,
        box=BoxSettings(frame=box_frame, min_pixels=min_pixels, max_pixels=max_pixels),
        answer_mode=answer_mode,
        lenient=lenient,
        device=device,
        generation=GenerationSettings(
            max_new_tokens=max_new_tokens, batch_size=batch_size, reasoning=reasoning
        ),
        headline=hmap,
        overwrite=overwrite,
        dtype=dtype,
    )
    _echo_json({"groups": m["groups"], "arena": m["arena"], "source": m["source"], "statuses": m["statuses"]})


@sub.command("teach")
def teach_cmd(
    records: Path = typer.Option(..., help="Records JSONL (training questions)."),
    out: Path = typer.Option(
        ..., help="Records JSONL to write, with teacher chains (template where refused)."
    ),
    work: Path = typer.Option(..., help="Folder for the teacher's raw answers (resumable)."),
    endpoint: str = typer.Option(..., help="OpenAI-compatible base URL of the teacher VLM."),
    endpoint_model: str = typer.Option("default", help="Teacher model name sent to the endpoint."),
    root: Path = typer.Option(None, help=ROOT_HELP),
    split: str = typer.Option("train"),
    allow_leakage: bool = typer.Option(False),
    limit: int = typer.Option(0),
    concurrency: int = typer.Option(8, min=1),
    retries: int = typer.Option(4, min=0),
    timeout: float = typer.Option(120.0),
    max_tokens: int = typer.Option(1024),
    api_key_env: str = typer.Option("OPENAI_API_KEY"),
    box_frame: str = typer.Option("norm1000", help=BOX_FRAME_HELP),
) -> None:
    """Teacher chains from a served VLM: validated, kept where valid, template chains elsewhere."""
    from surgkit.reasoning.endpoint import EndpointSettings
    from surgkit.reasoning.records import write_jsonl
    from surgkit.reasoning.scoring import BoxSettings
    from surgkit.reasoning.teacher import teach

    recs = _common_train(records, split, allow_leakage, limit)
    ep = EndpointSettings(
        url=endpoint,
        model=endpoint_model,
        timeout=timeout,
        max_tokens=max_tokens,
        concurrency=concurrency,
        retries=retries,
        api_key_env=api_key_env,
    )
    new, stats = teach(recs, ep, root, work, BoxSettings(frame=box_frame))
    write_jsonl(out, new)
    _echo_json(stats)


@sub.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="File to import."),
    fmt: str = typer.Option(
        ..., "--format", help="swift (Surg-R1 / ms-swift JSONL) or surgery-r1 (VQA/grounding/CoT JSON)."
    ),
    out: Path = typer.Option(..., help="Records JSONL to write."),
    dataset: str = typer.Option(None, help="Dataset name of the records (default: the format's)."),
    split: str = typer.Option("test", help="Split of the imported records."),
    root: Path = typer.Option(None, help="Folder image paths are relative to (default: the file's folder)."),
    box_format: str = typer.Option(
        "vqla", help="surgery-r1 boxes: vqla (1-based inclusive pixels), pixel, norm, norm1000."
    ),
) -> None:
    """Import Surg-R1 ms-swift JSONL or Surgery-R1-style JSON as records; bad lines are listed."""
    from surgkit.reasoning.importers import import_file

    kw = {"split": split, "image_root": root}
    if dataset:
        kw["dataset"] = dataset
    if fmt == "surgery-r1":
        kw["box_format"] = box_format
    res = import_file(fmt, file, out, **kw)
    for e in res["errors"][:20]:
        typer.echo(e, err=True)
    typer.echo(
        f"wrote {res['written']} records to {out} ({res['chains']} with a valid chain, {len(res['errors'])} lines refused)"
    )


@sub.command("export")
def export_cmd(
    records: Path = typer.Option(..., help="Records JSONL."),
    out: Path = typer.Option(..., help="ms-swift JSONL to write."),
    root: Path = typer.Option(None, help=ROOT_HELP),
    split: str = typer.Option("train"),
) -> None:
    """Export records as ms-swift / Surg-R1 JSONL (train a 7B with ms-swift instead of TRL)."""
    import json

    from surgkit.reasoning.importers import to_swift
    from surgkit.reasoning.records import read_records
    from surgkit.utils.io import atomic_write

    recs = [r for r in read_records(records) if split == "all" or r.split == split]
    with atomic_write(out, "w", encoding="utf-8") as fh:
        for item in to_swift(recs, root):
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    typer.echo(f"wrote {len(recs)} lines to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(sub, name="reason")
