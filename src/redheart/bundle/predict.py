"""`predict(cfg)`: predict.py's pure function: a bundle over one text or a whole file, in batches.

The output file goes by suffix: `.jsonl` (one object per text: id, text, then the model's fields) or
`.json` (one array). It is written to a temporary name and renamed, so a stopped run leaves no half file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from redheart.bundle.errors import BundleError
from redheart.bundle.inputs import check_input, count_texts, read_texts
from redheart.bundle.model import ENCODE_CHUNK, RedHeartModel, load_model
from redheart.io import atomic_write_with

log = logging.getLogger(__name__)


def _batches(pairs: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    while batch := list(islice(pairs, size)):
        yield batch


def predict_file(model: RedHeartModel, input_path: Path, output_path: Path, fmt: str = "auto",
                 table: dict[str, Any] | None = None, batch_size: int | None = None, progress: bool = True) -> int:
    """Stream `input_path` through the model into `output_path`; returns the number of texts."""
    from tqdm.auto import tqdm

    check_input(input_path)
    size = int(batch_size or model.batch_size)
    pairs = read_texts(input_path, fmt, table, model.schema)
    first = next(pairs, None)  # an input without any text is refused before a progress bar or file appears
    if first is None:
        raise BundleError(f"input={input_path}: no text in it (blank lines only); give at least one text")
    pairs = chain([first], pairs)
    as_array = output_path.suffix.lower() == ".json"
    total = count_texts(input_path, fmt)
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8") as out, tqdm(total=total, unit="text", disable=not progress,
                                                           desc="predict") as bar:
            out.write("[\n" if as_array else "")
            for batch in _batches(pairs, size * ENCODE_CHUNK):
                rows = model.records(model.outputs([t for _, t in batch], size))
                for (rid, text), row in zip(batch, rows, strict=True):
                    line = json.dumps({"id": rid, "text": text, **row}, ensure_ascii=False)
                    out.write((",\n" if as_array and count else "") + line + ("" if as_array else "\n"))
                    count += 1
                bar.update(len(batch))
            out.write("\n]\n" if as_array else "")

    atomic_write_with(output_path, write)
    return count


def predict(cfg: DictConfig) -> dict[str, Any]:
    if cfg.get("bundle") in (None, "", "???"):
        raise BundleError("bundle=DIR is required: the folder export.py or analyze.py wrote")
    model = load_model(cfg.bundle, device=cfg.get("device"), embedding_model=cfg.get("embedding_model"))
    if cfg.get("text") is not None:
        (row,) = model.predict([str(cfg.text)], cfg.get("batch_size"))
        print(json.dumps({"text": str(cfg.text), **row}, indent=2, ensure_ascii=False))
        return row
    if not cfg.get("input"):
        raise BundleError('give input=FILE (with output=FILE) or text="..."')
    input_path = Path(cfg.input).expanduser()
    output_path = Path(cfg.output).expanduser() if cfg.get("output") else Path(f"{input_path.stem}.predictions.jsonl")
    data = cfg.get("data")
    table = OmegaConf.to_container(data.table, resolve=True) if data is not None and data.get("table") else None
    progress = bool(cfg.get("progress", True))
    count = predict_file(model, input_path, output_path, cfg.get("format", "auto"), table, cfg.get("batch_size"),
                         progress)
    log.info("predicted %d texts with %s: %s", count, model.folder, output_path)
    return {"texts": count, "output": str(output_path)}
