"""Token files: a jet or shower file tokenized once, stored as the GPT's input sequences.

Layout (documented for users in ``data/README.md``)::

    /sequences          int16 (N, sequence_length + 2)  START t1 .. tn STOP, then PAD (-1);
                        int32 when the vocabulary does not fit int16 (codebook_size + 1 > 32767)
    jets:
    /label              int8  (N,)   JetClass class index, as in the jet file
    /jet_eta, /jet_phi  float32 (N,) the axis the tokens are relative to (to decode to absolute eta, phi)
    /jet_pt             float32 (N,) the jet's pT [GeV] as in the jet file (schema version 2 on), which a
                        GPT may be conditioned on (GPTConfig.jet_pt_edges)
    /n_dropped          int32 (N,)   constituents the pre-processing cut or truncated
    showers:
    /incident_energy    float32 (N,) photon energy [GeV]
    attrs: schema, schema_version, content ("jets" or "showers"), codebook_size, vocabulary_size,
           start, stop, pad, tokenizer (file it was made with), tokenizer_kind, source, preprocessing
           (jets also label_names)

Every dataset is stored contiguous and uncompressed, so that training can read a
random batch of rows straight from disk (:class:`~omnijet_lib.tokenizers.token_dataset.TokenDataset`):
a row is one contiguous read (260 bytes for a jet), where a gzip-chunked dataset decompresses a whole
chunk per row (~0.5 s for 64 random rows of a 10^6-row file, against ~1 ms).
Files written before (gzip-chunked, int32 sequences) read the same; readers cast
the sequences to int64.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from omnijet_lib.atomic import atomic_path, file_digest
from omnijet_lib.data.hdf5 import open_hdf5
from omnijet_lib.data.jet_files import iter_jets, jet_file_info
from omnijet_lib.data.jets import JETCLASS_LABELS
from omnijet_lib.data.preprocessing import preprocess
from omnijet_lib.data.shower_files import iter_showers, shower_file_info
from omnijet_lib.data.shower_preprocessing import preprocess_showers
from omnijet_lib.errors import BadDataError, SchemaError, check_int
from omnijet_lib.tokenizers.base import Tokenizer
from omnijet_lib.tokenizers.registry import load_tokenizer
from omnijet_lib.tokenizers.tokens import PAD, START, from_sequences, stop_token, to_sequences, vocabulary_size

SCHEMA = "omnijet-tokens"
SCHEMA_VERSION = 2  # 2: jets carry /jet_pt
# Per-sequence columns stored beside /sequences, by content.
COLUMNS = {
    "jets": {"label": "i1", "jet_pt": "f4", "jet_eta": "f4", "jet_phi": "f4", "n_dropped": "i4"},
    "showers": {"incident_energy": "f4"},
}


def sequence_dtype(codebook_size: int) -> str:
    """The smallest integer type holding every token and PAD: int16 up to 32 766 codes, else int32."""
    return "i2" if stop_token(codebook_size) <= np.iinfo(np.int16).max else "i4"


@dataclass(frozen=True)
class TokenSequences:
    """What the GPT reads: sequences plus what is needed to decode and to label them."""

    sequences: np.ndarray  # (N, T) int64, START ... STOP, PAD after
    columns: dict[str, np.ndarray]  # per-sequence values of COLUMNS[content]
    codebook_size: int
    content: str = "jets"  # "jets" or "showers"

    def __len__(self) -> int:
        return len(self.sequences)

    def _column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            msg = f"a token file of {self.content} has no {name!r}; it has {sorted(self.columns)}"
            raise KeyError(msg)
        return self.columns[name]

    @property
    def label(self) -> np.ndarray:
        return self._column("label")

    @property
    def jet_pt(self) -> np.ndarray:
        return self._column("jet_pt")

    @property
    def jet_eta(self) -> np.ndarray:
        return self._column("jet_eta")

    @property
    def jet_phi(self) -> np.ndarray:
        return self._column("jet_phi")

    @property
    def incident_energy(self) -> np.ndarray:
        return self._column("incident_energy")

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence including START and STOP."""
        return (self.sequences != PAD).sum(axis=1)

    def tokens(self, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Strip START/STOP: (tokens (N, max_length), mask) for a tokenizer's decode."""
        return from_sequences(self.sequences, self.codebook_size, max_length=max_length)


def _as_tokenizer(tokenizer: Tokenizer | str | os.PathLike) -> tuple[Tokenizer, str]:
    tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)
    return tokenizer, tokenizer.source_file


def write_token_file(
    out_path: str | os.PathLike,
    chunks: Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]],
    *,
    n: int,
    content: str,
    tokenizer: Tokenizer,
    tokenizer_file: str = "",
    source: str = "",
    progress: bool = True,
) -> Path:
    """Write ``n`` sequences from ``chunks`` of ``(tokens, mask, columns)``, atomically.

    ``columns`` holds each chunk's values of ``COLUMNS[content]``; a chunk count
    other than ``n`` in total is an error, not a silently short file.  Datasets are
    contiguous and uncompressed (see the module's docstring: fast random rows).
    """
    k = tokenizer.codebook_size
    length = tokenizer.preprocessing.sequence_length + 2
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as file:
        datasets = {
            name: file.create_dataset(name, shape=(n, length) if name == "sequences" else (n,), dtype=dtype)
            for name, dtype in {"sequences": sequence_dtype(k), **COLUMNS[content]}.items()
        }
        attrs = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "content": content,
            "codebook_size": k, "vocabulary_size": vocabulary_size(k),
            "start": START, "stop": stop_token(k), "pad": PAD,
            "tokenizer": tokenizer_file, "tokenizer_kind": tokenizer.kind,
            "source": source, "preprocessing": json.dumps(tokenizer.preprocessing.to_dict()),
        }  # fmt: skip
        if content == "jets":
            attrs["label_names"] = list(JETCLASS_LABELS)
        file.attrs.update(attrs)
        done, too_many = 0, False
        with tqdm(total=n, desc=f"tokenize {Path(source).name}", unit=content[:-1], disable=not progress) as bar:
            for tokens, mask, columns in chunks:
                stop = done + len(tokens)
                too_many = stop > n
                if too_many:
                    break
                datasets["sequences"][done:stop] = to_sequences(tokens, mask, k)
                for name in COLUMNS[content]:
                    datasets[name][done:stop] = columns[name]
                done = stop
                bar.update(len(tokens))
        if done != n:
            msg = f"expected {n} {content} from {source or 'the input'}, got {'more' if too_many else done}"
            raise BadDataError(msg)
        file.attrs[f"n_{content}"] = done
    return Path(out_path)


def tokenize_file(
    path: str | os.PathLike,
    tokenizer: Tokenizer | str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    chunk_size: int | None = None,
    progress: bool = True,
) -> Path:
    """Tokenize every jet (or shower) of ``path`` once and store the sequences at ``out_path``.

    Jets or showers: whichever the tokenizer was trained on, as its pre-processing
    says.  ``tokenizer`` is a tokenizer or the path of a saved one (recorded in the
    file).  The file is streamed in chunks of ``chunk_size`` (default: 20 000 jets,
    5 000 showers), so memory does not grow with its size.
    """
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", minimum=1)  # before the tokenizer is loaded, the output begun
    tokenizer, tokenizer_file = _as_tokenizer(tokenizer)  # loaded once; it remembers its file
    content = tokenizer.preprocessing.content
    count, chunks, default_chunk_size = CONTENT_READERS[content]
    return write_token_file(
        out_path, chunks(path, tokenizer, chunk_size or default_chunk_size), n=count(path), content=content,
        tokenizer=tokenizer, tokenizer_file=tokenizer_file, source=str(path), progress=progress,
    )  # fmt: skip


def _jet_chunks(path, tokenizer: Tokenizer, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    for jets in iter_jets(path, chunk_size=chunk_size):
        pre = preprocess(jets, tokenizer.preprocessing)
        columns = {
            "label": jets.label, "jet_pt": jets.pt, "jet_eta": pre.jet_eta, "jet_phi": pre.jet_phi,
            "n_dropped": pre.n_dropped,
        }  # fmt: skip
        yield tokenizer.encode(pre.features, pre.mask), pre.mask, columns


def _shower_chunks(path, tokenizer: Tokenizer, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    for showers in iter_showers(path, chunk_size=chunk_size):
        features, mask = preprocess_showers(showers, tokenizer.preprocessing)
        yield tokenizer.encode(features, mask), mask, {"incident_energy": showers.incident_energy}


# content -> (how many the file holds, its chunks as (tokens, mask, columns), default chunk size)
CONTENT_READERS = {
    "jets": (lambda path: jet_file_info(path)["n_jets"], _jet_chunks, 20_000),
    "showers": (lambda path: shower_file_info(path)["n_showers"], _shower_chunks, 5_000),
}


def tokenized(
    jet_path: str | os.PathLike,
    tokenizer_file: str | os.PathLike,
    token_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> Path:
    """The token file of ``jet_path`` (or a shower file) under the saved tokenizer ``tokenizer_file``; tokenized now if not yet.

    Kept as ``token_dir/<tokenizer>-<digest>/<jet file>.h5``, where the digest is
    the start of the tokenizer file's SHA-256: a retrained tokenizer of the same
    name gets new token files instead of stale ones.  A token file of an older
    schema version (which lacks a column this version stores) is made again.
    """
    tokenizer_file = Path(tokenizer_file)
    if not tokenizer_file.exists():
        msg = f"tokenizer file not found: {tokenizer_file}"
        raise FileNotFoundError(msg)
    out_path = Path(token_dir) / f"{tokenizer_file.stem}-{file_digest(tokenizer_file)}" / f"{Path(jet_path).stem}.h5"
    if out_path.exists() and _schema_version(out_path) < SCHEMA_VERSION:
        print(f"{out_path}: written by an older version of the token-file schema; tokenizing again")
        out_path.unlink()
    if not out_path.exists():
        tokenize_file(jet_path, tokenizer_file, out_path, progress=progress)
    return out_path


def _schema_version(path: Path) -> int:
    with open_hdf5(path, what="token file") as file:
        return int(file.attrs.get("schema_version", 0))


@dataclass(frozen=True)
class TokenFileInfo:
    """What a token file holds, from its attributes and dataset shapes (nothing read)."""

    path: Path
    content: str  # "jets" or "showers"
    codebook_size: int
    n_sequences: int
    width: int  # tokens per stored row, START, STOP and padding included


def _check_token_file(file: h5py.File, path: Path) -> TokenFileInfo:
    """Check the schema of an open token file: attributes, datasets, shapes; errors name the file."""
    if file.attrs.get("schema") != SCHEMA:
        msg = f"{path} is not a token file (schema {file.attrs.get('schema')!r}, expected {SCHEMA!r})"
        raise BadDataError(msg)
    content = str(file.attrs.get("content", "jets"))
    if content not in COLUMNS:
        msg = f"token file {path} holds unknown content {content!r}; expected one of {sorted(COLUMNS)}"
        raise BadDataError(msg)
    for name in ("sequences", *COLUMNS[content]):
        if name not in file:
            if int(file.attrs.get("schema_version", 0)) < SCHEMA_VERSION:
                msg = (
                    f"token file {path} has no /{name}: it was written by schema version "
                    f"{file.attrs.get('schema_version')} (this is {SCHEMA_VERSION}); tokenize its jet file again "
                    "(omnijet tokenize, or delete it and let tokenized() remake it)"
                )
                raise BadDataError(msg)
            raise SchemaError(name, file.keys(), file=str(path), obj="/")
    shape = file["sequences"].shape
    if len(shape) != 2:
        msg = f"/sequences has shape {shape}, expected (N, T), in {path}"
        raise BadDataError(msg)
    for name in COLUMNS[content]:
        if file[name].shape != (shape[0],):
            msg = f"/{name} has shape {file[name].shape} but /sequences has {shape[0]} rows, in {path}"
            raise BadDataError(msg)
    return TokenFileInfo(path, content, int(file.attrs["codebook_size"]), shape[0], shape[1])


def open_token_file(path: str | os.PathLike) -> tuple[h5py.File, TokenFileInfo]:
    """Open a token file for reading and check its schema; the caller closes the file."""
    path = Path(path)
    file = open_hdf5(path, what="token file")
    try:
        return file, _check_token_file(file, path)
    except BaseException:
        file.close()
        raise


def token_file_info(path: str | os.PathLike) -> TokenFileInfo:
    """Content, codebook size and shape of a token file, its schema checked."""
    file, info = open_token_file(path)
    file.close()
    return info


def read_token_file(path: str | os.PathLike, *, start: int = 0, stop: int | None = None) -> TokenSequences:
    """Read sequences ``start:stop`` of a token file whole, checking its schema.

    For files too large for memory, or several files as one dataset, read rows as
    needed with :class:`~omnijet_lib.tokenizers.token_dataset.TokenDataset`.
    """
    file, info = open_token_file(path)
    with file:
        stop = info.n_sequences if stop is None else stop
        if not 0 <= start <= stop <= info.n_sequences:
            msg = f"range {start}:{stop} outside the file's {info.n_sequences} sequences, in {info.path}"
            raise IndexError(msg)
        sequences = file["sequences"][start:stop].astype(np.int64)
        columns = {name: file[name][start:stop] for name in COLUMNS[info.content]}
    return TokenSequences(sequences, columns, info.codebook_size, info.content)
