"""Token files: a jet file tokenized once, stored as the GPT's input sequences.

Layout (documented for users in ``data/README.md``)::

    /sequences          int32 (N, max_constituents + 2)  START t1 .. tn STOP, then PAD (-1)
    /label              int8  (N,)   JetClass class index, as in the jet file
    /jet_eta, /jet_phi  float32 (N,) the axis the tokens are relative to (to decode to absolute eta, phi)
    /n_dropped          int32 (N,)   constituents the pre-processing cut or truncated
    attrs: schema, schema_version, codebook_size, vocabulary_size, start, stop, pad,
           tokenizer (file it was made with), tokenizer_kind, source (jet file), preprocessing, label_names
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from omnijet_lib.atomic import atomic_path, file_digest
from omnijet_lib.data.jet_files import iter_jets, jet_file_info, open_hdf5
from omnijet_lib.data.jets import JETCLASS_LABELS
from omnijet_lib.data.preprocessing import preprocess
from omnijet_lib.errors import BadDataError, SchemaError
from omnijet_lib.tokenizers.base import Tokenizer, load_tokenizer
from omnijet_lib.tokenizers.tokens import PAD, START, from_sequences, stop_token, to_sequences, vocabulary_size

SCHEMA = "omnijet-tokens"
SCHEMA_VERSION = 1
DATASETS = {"sequences": "i4", "label": "i1", "jet_eta": "f4", "jet_phi": "f4", "n_dropped": "i4"}


@dataclass(frozen=True)
class TokenSequences:
    """What the GPT reads: sequences plus what is needed to decode and to label them."""

    sequences: np.ndarray  # (N, T) int64, START ... STOP, PAD after
    label: np.ndarray  # (N,)
    jet_eta: np.ndarray  # (N,)
    jet_phi: np.ndarray  # (N,)
    codebook_size: int

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence including START and STOP."""
        return (self.sequences != PAD).sum(axis=1)

    def tokens(self, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Strip START/STOP: (tokens (N, max_length), mask) for a tokenizer's decode."""
        return from_sequences(self.sequences, self.codebook_size, max_length=max_length)


def tokenize_jet_file(
    jet_path: str | os.PathLike,
    tokenizer: Tokenizer | str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    chunk_size: int = 20_000,
    progress: bool = True,
) -> Path:
    """Tokenize every jet of ``jet_path`` once and store the sequences at ``out_path``.

    ``tokenizer`` is a tokenizer or the path of a saved one (recorded in the file).
    The jet file is streamed in chunks, so memory does not grow with its size.
    """
    tokenizer_file = None
    if not isinstance(tokenizer, Tokenizer):
        tokenizer_file = str(tokenizer)
        tokenizer = load_tokenizer(tokenizer)
    n_jets = jet_file_info(jet_path)["n_jets"]
    k = tokenizer.codebook_size
    length = tokenizer.preprocessing.max_constituents + 2
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as file:
        datasets = {
            name: file.create_dataset(
                name, shape=(n_jets, length) if name == "sequences" else (n_jets,), dtype=dtype,
                chunks=True, compression="gzip", compression_opts=1, shuffle=True,
            )
            for name, dtype in DATASETS.items()
        }  # fmt: skip
        attrs = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "codebook_size": k, "vocabulary_size": vocabulary_size(k),
            "start": START, "stop": stop_token(k), "pad": PAD,
            "tokenizer": tokenizer_file or "", "tokenizer_kind": tokenizer.kind,
            "source": str(jet_path), "preprocessing": json.dumps(tokenizer.preprocessing.to_dict()),
            "label_names": list(JETCLASS_LABELS),
        }  # fmt: skip
        file.attrs.update(attrs)
        done = 0
        with tqdm(total=n_jets, desc=f"tokenize {Path(jet_path).name}", unit="jet", disable=not progress) as bar:
            for jets in iter_jets(jet_path, chunk_size=chunk_size):
                pre = preprocess(jets, tokenizer.preprocessing)
                tokens = tokenizer.encode(pre.features, pre.mask)
                stop = done + len(jets)
                datasets["sequences"][done:stop] = to_sequences(tokens, pre.mask, k)
                datasets["label"][done:stop] = jets.label
                datasets["jet_eta"][done:stop] = pre.jet_eta
                datasets["jet_phi"][done:stop] = pre.jet_phi
                datasets["n_dropped"][done:stop] = pre.n_dropped
                done = stop
                bar.update(len(jets))
        file.attrs["n_jets"] = done
    return Path(out_path)


def tokenized(
    jet_path: str | os.PathLike,
    tokenizer_file: str | os.PathLike,
    token_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> Path:
    """The token file of ``jet_path`` under the saved tokenizer ``tokenizer_file``; tokenized now if not yet.

    Kept as ``token_dir/<tokenizer>-<digest>/<jet file>.h5``, where the digest is
    the start of the tokenizer file's SHA-256: a retrained tokenizer of the same
    name gets new token files instead of stale ones.
    """
    tokenizer_file = Path(tokenizer_file)
    if not tokenizer_file.exists():
        msg = f"tokenizer file not found: {tokenizer_file}"
        raise FileNotFoundError(msg)
    out_path = Path(token_dir) / f"{tokenizer_file.stem}-{file_digest(tokenizer_file)}" / f"{Path(jet_path).stem}.h5"
    if not out_path.exists():
        tokenize_jet_file(jet_path, tokenizer_file, out_path, progress=progress)
    return out_path


def read_token_file(path: str | os.PathLike, *, start: int = 0, stop: int | None = None) -> TokenSequences:
    """Read sequences ``start:stop`` of a token file, checking its schema."""
    path = Path(path)
    with open_hdf5(path, what="token file") as file:
        for name in DATASETS:
            if name not in file:
                raise SchemaError(name, file.keys(), file=str(path), obj="/")
        if file.attrs.get("schema") != SCHEMA:
            msg = f"{path} is not a token file (schema {file.attrs.get('schema')!r}, expected {SCHEMA!r})"
            raise BadDataError(msg)
        n = file["sequences"].shape[0]
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            msg = f"range {start}:{stop} outside the file's {n} sequences, in {path}"
            raise IndexError(msg)
        columns = {name: file[name][start:stop] for name in DATASETS}
        codebook_size = int(file.attrs["codebook_size"])
    for name, values in columns.items():
        if len(values) != len(columns["sequences"]):
            msg = f"/{name} has {len(values)} rows but /sequences has {len(columns['sequences'])}, in {path}"
            raise BadDataError(msg)
    return TokenSequences(
        columns["sequences"].astype(np.int64), columns["label"], columns["jet_eta"], columns["jet_phi"], codebook_size
    )
