"""`portraittalk preprocess`: a folder of talking-head videos (HDTF or MEAD style) → the clip layout of
`layout.py`, like SynthTalk's: 25 fps face crops, 16 kHz mono audio, face and lip masks, captions.

    portraittalk preprocess IN_DIR OUT_DIR [--size 512] [--fps 25] [--expand 1.2] [--workers N]
        [--backend auto|mediapipe|colour|fallback] [--frames-format auto|npy|mp4]
        [--max-seconds S] [--clip-seconds 10] [--min-seconds 1] [--overwrite]

Input: every .mp4 .mkv .mov .webm .avi under IN_DIR (recursively; OUT_DIR is never read as input). A caption
is read from a sidecar `<name>.txt` next to the video. What each video becomes is described in
`preprocess_video.py`.

Runs: videos are processed in parallel (`--workers` processes; the output does not depend on it). A file
that cannot be read, has no audio or shows no face is reported in OUT_DIR/report.json and on stdout, and
the run goes on. Rerunning the command resumes: finished videos (OUT_DIR/videos/*.json) and finished clips
are kept as they are; only a different `--size`, `--fps`, `--expand`, `--backend`, `--frames-format`,
`--clip-seconds` or `--min-seconds` needs another OUT_DIR or `--overwrite`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .layout import write_index
from .preprocess_video import (
    SAMPLE_RATE, Settings, VideoJob, describe_error, finished_video, process_video,
)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".webm", ".avi")
SETTINGS_FILE = "preprocess.json"


def find_inputs(in_dir: Path, out_dir: Path) -> tuple[list[Path], list[Path]]:
    """(videos, other files) under `in_dir`, sorted; caption sidecars of videos are neither."""
    out_dir = out_dir.resolve()
    videos, others = [], []
    for path in sorted(p for p in in_dir.rglob("*") if p.is_file()):
        if path.resolve().is_relative_to(out_dir):
            continue  # an OUT_DIR inside IN_DIR holds our own frames.mp4 files
        (videos if path.suffix.lower() in VIDEO_EXTENSIONS else others).append(path)
    stems = {v.with_suffix("") for v in videos}
    others = [p for p in others if not (p.suffix.lower() == ".txt" and p.with_suffix("") in stems)]
    return videos, others


def read_caption(video: Path) -> str:
    sidecar = video.with_suffix(".txt")
    return sidecar.read_text(encoding="utf-8", errors="replace").strip() if sidecar.is_file() else ""


def resolve_settings(size: int, fps: float, expand: float, backend: str, frames_format: str,
                     clip_seconds: float, min_seconds: float, max_seconds: float | None) -> Settings:
    from ..faces import resolve_backend

    if size < 8 or fps <= 0 or expand <= 0 or clip_seconds <= 0 or min_seconds < 0:
        raise ValueError("--size must be at least 8; --fps, --expand and --clip-seconds positive")
    if frames_format == "auto":
        frames_format = "npy" if size <= 128 else "mp4"  # large crops as .npy would be huge on disk
    return Settings(fps=float(fps), size=int(size), expand=float(expand), backend=resolve_backend(backend),
                    frames_format=frames_format, clip_seconds=float(clip_seconds), min_seconds=float(min_seconds),
                    max_seconds=None if max_seconds is None else float(max_seconds))


def claim_output(out: Path, settings: Settings, overwrite: bool) -> None:
    """Start or resume OUT_DIR; clips made with other settings must never be mixed in."""
    if overwrite:
        for name in ("clips", "videos", ".partial"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (SETTINGS_FILE, "dataset.json", "report.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    wanted = settings.clip_settings()
    path = out / SETTINGS_FILE
    if path.is_file():
        found = json.loads(path.read_text())
        if found != wanted:
            raise ValueError(f"{out} holds clips made with {found}, not {wanted}; use another OUT_DIR or --overwrite")
    else:
        path.write_text(json.dumps(wanted, indent=1))


def run_jobs(jobs: list[VideoJob], workers: int, on_result) -> None:
    """process_video over the jobs, in `workers` processes; `on_result(job, result)` as each ends."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            on_result(job, process_video(job))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: mediapipe and torch hold threads that fork copies badly.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        futures = {pool.submit(process_video, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool as e:  # a worker died (e.g. out of memory); the rest are lost too
                result = {"video": job.rel, "clips": [], "dropped": [],
                          "error": f"worker process died ({describe_error(e)}); rerun to resume"}
            on_result(job, result)


def preprocess(in_dir, out_dir, *, size: int = 512, fps: float = 25.0, expand: float = 1.2, workers: int = 1,
               backend: str = "auto", frames_format: str = "auto", max_seconds: float | None = None,
               clip_seconds: float = 10.0, min_seconds: float = 1.0, overwrite: bool = False,
               verbose: bool = True) -> dict:
    """Preprocess every video under `in_dir` into `out_dir` (see the module docstring). Returns the
    report, also written to OUT_DIR/report.json; dataset.json lists every clip made from the videos found."""
    started = time.monotonic()
    in_dir, out = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {in_dir}")
    settings = resolve_settings(size, fps, expand, backend, frames_format, clip_seconds, min_seconds, max_seconds)
    claim_output(out, settings, overwrite)
    videos, others = find_inputs(in_dir, out)
    jobs = [VideoJob(str(v.resolve()), v.relative_to(in_dir).as_posix(), read_caption(v), str(out), settings)
            for v in videos]

    results: dict[str, dict] = {}
    todo = []
    for job in jobs:
        earlier = finished_video(out, job)
        if earlier is not None:
            results[job.rel] = earlier
        else:
            todo.append(job)
    resumed = len(results)

    def on_result(job: VideoJob, result: dict) -> None:
        results[job.rel] = result
        if verbose:
            state = f"FAILED: {result['error']}" if result["error"] else f"{len(result['clips'])} clips"
            print(f"preprocess [{len(results)}/{len(jobs)}] {job.rel}: {state}", flush=True)

    run_jobs(todo, workers, on_result)
    shutil.rmtree(out / ".partial", ignore_errors=True)

    ordered = [results[job.rel] for job in jobs]  # input order, whatever order the workers finished in
    clip_ids = sorted(c for r in ordered for c in r["clips"])
    write_index(out, clip_ids, fps=settings.fps, sample_rate=SAMPLE_RATE, size=settings.size, source="preprocess",
                extra={"preprocess": settings.clip_settings()})
    report = {
        "input": str(in_dir), "settings": settings.clip_settings(), "max_seconds": settings.max_seconds,
        "videos": len(jobs), "videos_resumed": resumed, "videos_failed": sum(1 for r in ordered if r["error"]),
        "clips": len(clip_ids),
        "failed": [{"video": r["video"], "error": r["error"], "clips_kept": len(r["clips"])}
                   for r in ordered if r["error"]],
        "dropped": [{"video": r["video"], **d} for r in ordered for d in r["dropped"]],
        "ignored": [p.relative_to(in_dir).as_posix() for p in others],
        "seconds": round(time.monotonic() - started, 2),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    if verbose:
        print(f"preprocess: {report['clips']} clips from {len(jobs) - report['videos_failed']} of {len(jobs)} "
              f"videos in {out} ({report['seconds']:.1f} s); {report['videos_failed']} failed, "
              f"{len(report['ignored'])} files ignored; see {out / 'report.json'}")
    return report
