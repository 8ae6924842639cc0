"""Versioned binary files: programs, MEM images, machine states and event traces (docs/formats.md).

Verification engineers read these files from RTL testbenches and C++ simulators, not through this module, so the
byte layout is the contract (docs/formats.md gives it, with a reader that needs only numpy and the standard
library). Every kind shares one container, all little-endian:

    prefix   magic (8 bytes, one per kind), uint16 version, uint16 flags (0), uint32 header length H
    header   H bytes of UTF-8 JSON: {"config": config_to_dict(cfg), ...the kind's own fields}
    CRC32    of the prefix and the header
    blocks   each: tag (4 bytes), uint64 length n, CRC32 of the data, CRC32 of these 16 bytes, then n bytes

    program  one array block: the encoding int32 [Q, L, 8] (`isa.encode`); header "queues" (checked on read)
    mem      one array block: the SRAM image uint8 [M, mem_words, L]
    state    one array block per leaf of `MachineState` ("cycle", "mem", "icu.pc", ...), checked on read against
             the shapes and dtypes of `init_state(cfg)`
    trace    one chunk block per `TraceWriter.append`, then an end block (chunk count, events per signal)

    write_program(path, cfg, program)     cfg, arr = read_program(path)
    write_mem(path, cfg, image)           cfg, image = read_mem(path)
    write_state(path, cfg, state)         cfg, state = read_state(path)
    with TraceWriter(path, cfg, signals, meta) as w:      cfg, header, events = read_trace(path)
        trace.record(cfg, program, None, n, signals, sink=w.append)
    file_kind(path) -> "program" | "mem" | "state" | "trace"

Readers check everything before they trust it (magic, version, flags, lengths against the bytes left, CRCs,
JSON, the config, every shape and dtype); every problem is a `FormatError` naming the file, the part and the
problem, and no other exception escapes a reader whatever the bytes. Sizes are checked against the file's size
before anything is allocated.

The array files need only numpy and `isa`; reading a state or a trace imports the simulator's layouts (jax).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import math
import os
import re
import struct
import types
import typing
import zlib
from collections.abc import Iterable, Iterator

import numpy as np

from . import isa
from .config import ChipConfig

__all__ = [
    "FormatError",
    "MAGIC",
    "VERSION",
    "TraceWriter",
    "config_from_dict",
    "config_to_dict",
    "file_kind",
    "iter_trace",
    "read_mem",
    "read_program",
    "read_state",
    "read_trace",
    "write_mem",
    "write_program",
    "write_state",
]

VERSION = 1
"""The format version this module writes and the newest it reads (the same for every kind)."""
MAGIC = {"program": b"LPUPROG\0", "mem": b"LPUMEM\0\0", "state": b"LPUSTATE", "trace": b"LPUTRACE"}
_KIND_OF = {v: k for k, v in MAGIC.items()}
_WORDS = {"program": "program", "mem": "MEM image", "state": "state", "trace": "trace"}
_PREFIX = struct.Struct("<8sHHI")  # magic, version, flags, header length
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_BLOCK = struct.Struct("<4sQI")  # tag, data length, data CRC (then the CRC32 of these 16 bytes)
BLOCK_HEAD = _BLOCK.size + 4
TAG_ARRAY, TAG_CHUNK, TAG_END = b"ARRY", b"CHNK", b"TEND"
_LIMIT = 1 << 20
"""A config read from a file may not imply more than this many queues, ports, lanes, positions, streams, delay slots
or accumulator rows (GroqChip1 has 124 queues, 320 lanes): a reader's work stays bounded whatever the header says."""


class FormatError(ValueError):
    """A file that cannot be read: the message names the file, the part (header, block k, column ...) and why.

    The message is one line: control characters (from a file name or a header's strings) are escaped."""

    def __init__(self, message: str):
        super().__init__(re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], str(message)))


# --------------------------------------------------------------------------- the config as JSON
def _to_json(v):
    if isinstance(v, tuple):
        return [_to_json(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot store a {type(v).__name__} in a file header")


def config_to_dict(cfg: ChipConfig) -> dict:
    """Every field of `cfg` as JSON values (tuples become lists): the inverse of `config_from_dict`."""
    return {f.name: _to_json(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


@functools.cache
def _config_types() -> dict[str, typing.Any]:
    return typing.get_type_hints(ChipConfig)


def _from_json(v, tp, where: str):
    """`v` (from JSON) as a value of type `tp` (int, float, bool, str, tuples of those, X | None)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _from_json(v, inner, where)
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise FormatError(f"{where}: must be a list, got {type(v).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(x, args[0], f"{where}[{i}]") for i, x in enumerate(v))
        if len(v) != len(args):
            raise FormatError(f"{where}: must be a list of {len(args)} values, got {len(v)}")
        return tuple(_from_json(x, a, f"{where}[{i}]") for i, (x, a) in enumerate(zip(v, args)))
    if tp is bool:
        if type(v) is not bool:
            raise FormatError(f"{where}: must be true or false, got {v!r:.40}")
        return v
    if tp is int:
        if type(v) is not int:
            raise FormatError(f"{where}: must be an integer, got {v!r:.40}")
        return v
    if tp is float:
        if type(v) not in (int, float) or not math.isfinite(v):
            raise FormatError(f"{where}: must be a finite number, got {v!r:.40}")
        return float(v)
    if tp is str:
        if type(v) is not str:
            raise FormatError(f"{where}: must be a string, got {v!r:.40}")
        return v
    raise FormatError(f"{where}: this reader cannot read a field of type {tp}")


def config_from_dict(d) -> ChipConfig:
    """The `ChipConfig` of a dict from `config_to_dict` (lists become tuples).

    Every field must be present, of its type and valid (`ChipConfig.validate`); an unknown field, or sizes
    beyond what a reader will allocate for (`_LIMIT`), is an error. Raises FormatError naming the field.
    """
    if not isinstance(d, dict):
        raise FormatError(f"config: must be a JSON object, got {type(d).__name__}")
    hints = _config_types()
    names = [f.name for f in dataclasses.fields(ChipConfig)]
    unknown = [k for k in d if k not in hints]
    if unknown:
        raise FormatError(f"config.{str(unknown[0])[:60]}: unknown field (this reader knows {', '.join(names)})")
    missing = [k for k in names if k not in d]
    if missing:
        raise FormatError(f"config.{missing[0]}: missing")
    kw = {k: _from_json(d[k], hints[k], f"config.{k}") for k in names}
    try:
        cfg = ChipConfig(**kw)
    except ValueError as e:  # ConfigError: "ChipConfig.field: problem"
        raise FormatError(f"config: {e}") from None
    except Exception as e:  # a combination validate() did not foresee
        raise FormatError(f"config: invalid ({type(e).__name__}: {e})") from None
    sizes = {
        "n_streams": cfg.n_streams,
        "n_lanes": cfg.n_lanes,
        "n_positions": cfg.n_positions,
        "max_delay_slots": cfg.max_delay_slots,
        "mxm_acc_rows": cfg.mxm_acc_rows,
        "queues": cfg.n_mem + cfg.vxm_alus + 3 * cfg.n_planes + cfg.n_sxm_units,
        "ports": cfg.n_mem + cfg.vxm_alus + cfg.n_planes + 4 * cfg.n_sxm_units,
    }
    for k, v in sizes.items():
        if v > _LIMIT:
            raise FormatError(f"config: {v} {k} is beyond this reader's limit of {_LIMIT}")
    return cfg


# --------------------------------------------------------------------------- writing
def _le(a: np.ndarray) -> np.ndarray:
    """`a` C-contiguous and little-endian."""
    return np.ascontiguousarray(a, a.dtype.newbyteorder("<"))


def _dtype_str(dt) -> str:
    return np.dtype(dt).newbyteorder("<").str


def _block_head(tag: bytes, n: int, crc: int) -> bytes:
    head = _BLOCK.pack(tag, n, crc)
    return head + _U32.pack(zlib.crc32(head))


def _prefix_and_header(kind: str, header: dict) -> bytes:
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"the {_WORDS[kind]} header must be JSON (meta included): {e}") from None
    head = _PREFIX.pack(MAGIC[kind], VERSION, 0, len(text)) + text
    return head + _U32.pack(zlib.crc32(head))


def _bytes_of(a: np.ndarray) -> memoryview:
    return memoryview(_le(a).reshape(-1).view(np.uint8))


def _write_arrays(path, kind: str, cfg: ChipConfig, extra: dict, arrays: list[tuple[str, np.ndarray]]) -> None:
    """Write a file of array blocks atomically (a temporary file renamed over `path`)."""
    header = {"config": config_to_dict(cfg), **extra}
    header["arrays"] = [{"name": n, "dtype": _dtype_str(a.dtype), "shape": list(a.shape)} for n, a in arrays]
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(_prefix_and_header(kind, header))
            for _, a in arrays:
                data = _bytes_of(a)
                f.write(_block_head(TAG_ARRAY, data.nbytes, zlib.crc32(data)))
                f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_program(path, cfg: ChipConfig, program) -> None:
    """Write a program (an `isa.Program`, encoded here, or its encoding int32 [Q, L, 8]) for `cfg`."""
    if isinstance(program, isa.Program):
        arr = isa.encode(cfg, program)
    else:
        arr = np.asarray(program)
        Q = len(isa.queue_names(cfg))
        if arr.ndim != 3 or arr.shape[0] != Q or arr.shape[1] < 1 or arr.shape[2] != isa.N_FIELDS:
            raise ValueError(
                f"an encoded program must be int32 [{Q}, L, {isa.N_FIELDS}] for {cfg.name}, got {arr.shape}"
            )
        if arr.dtype != np.int32:
            if not np.issubdtype(arr.dtype, np.integer) or arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
                raise ValueError(f"an encoded program must hold int32 values, got {arr.dtype}")
            arr = arr.astype(np.int32)
    _write_arrays(path, "program", cfg, {"queues": list(isa.queue_names(cfg))}, [("program", arr)])


def _mem_shape(cfg: ChipConfig) -> tuple[int, int, int]:
    return (cfg.n_mem, cfg.mem_words, cfg.n_lanes)


def write_mem(path, cfg: ChipConfig, image) -> None:
    """Write an SRAM image uint8 [M, mem_words, L] (address-linear, as `state.mem_image`) for `cfg`."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.shape != _mem_shape(cfg):
        raise ValueError(
            f"a MEM image must be uint8 {list(_mem_shape(cfg))} for {cfg.name}, got {image.dtype} {image.shape}"
        )
    _write_arrays(path, "mem", cfg, {"mem_names": list(cfg.mem_names)}, [("mem", image)])


@functools.lru_cache(maxsize=16)
def _state_layout(cfg: ChipConfig):
    """(treedef, ((name, dtype str, shape), ...)) of `init_state(cfg)`, from shapes alone (nothing allocated)."""
    import jax

    from .state import init_state

    shapes = jax.eval_shape(lambda: init_state(cfg))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    names = tuple(
        (jax.tree_util.keystr(p, simple=True, separator="."), _dtype_str(x.dtype), tuple(x.shape)) for p, x in leaves
    )
    return treedef, names


def write_state(path, cfg: ChipConfig, state) -> None:
    """Write a full checkpoint of a `MachineState` of `cfg`: every leaf, named as `tree_flatten_with_path` names it."""
    import jax

    _, layout = _state_layout(cfg)
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    if len(leaves) != len(layout):
        raise ValueError(f"the state has {len(leaves)} leaves; a {cfg.name} MachineState has {len(layout)}")
    arrays = []
    for (name, dt, shape), (p, x) in zip(layout, leaves):
        got = jax.tree_util.keystr(p, simple=True, separator=".")
        a = np.asarray(x)
        if got != name or _dtype_str(a.dtype) != dt or a.shape != shape:
            raise ValueError(f"state leaf {got} is {a.dtype} {a.shape}; a {cfg.name} state has {name} {dt} {shape}")
        arrays.append((name, a))
    _write_arrays(path, "state", cfg, {}, arrays)


# --------------------------------------------------------------------------- reading
class _In:
    """A file being read: its size, the position, and errors that name the file."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.f = open(self.path, "rb")
        self.size = os.fstat(self.f.fileno()).st_size
        self.pos = 0

    def close(self) -> None:
        self.f.close()

    def err(self, part: str, msg: str) -> FormatError:
        return FormatError(f"{self.path}: {part}: {msg}")

    @property
    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, part: str) -> bytearray:
        if n > self.left:
            raise self.err(part, f"truncated: needs {n} bytes, the file has {self.left} left")
        buf = bytearray(n)
        if self.f.readinto(buf) != n:
            raise self.err(part, "the file changed while it was read")
        self.pos += n
        return buf

    def seek(self, pos: int) -> None:
        self.f.seek(pos)
        self.pos = pos


def _reader(fn):
    """Every exception of a reader becomes a FormatError naming the file (the readers raise their own first)."""

    @functools.wraps(fn)
    def wrapped(path, *a, **kw):
        try:
            return fn(path, *a, **kw)
        except FormatError:
            raise
        except OSError as e:
            raise FormatError(f"{os.fspath(path)}: cannot read: {e.strerror or e}") from None
        except Exception as e:  # a check this module lacks: still one clear error, never another type
            raise FormatError(f"{os.fspath(path)}: unreadable ({type(e).__name__}: {e})") from e

    return wrapped


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _read_head(src: _In, kind: str | None) -> tuple[str, dict, ChipConfig]:
    """Check the prefix, the header's CRC and JSON and its config; returns (kind, header, cfg)."""
    raw = src.take(_PREFIX.size, "prefix")
    magic, version, flags, hlen = _PREFIX.unpack(raw)
    found = _KIND_OF.get(bytes(magic))
    if kind is not None and found != kind:
        if found is not None:
            raise src.err("magic", f"this is a {_WORDS[found]} file, not a {_WORDS[kind]} file")
        raise src.err("magic", f"not an lpu_jax {_WORDS[kind]} file (magic {bytes(magic)!r}, expected {MAGIC[kind]!r})")
    if found is None:
        raise src.err("magic", f"not an lpu_jax file (magic {bytes(magic)!r})")
    if version > VERSION:
        raise src.err(
            "prefix", f"version {version} of the {_WORDS[found]} format is newer than this reader (reads {VERSION})"
        )
    if version < 1:
        raise src.err("prefix", f"version {version} is not a format version (versions start at 1)")
    if flags:
        raise src.err("prefix", f"unknown flags {flags:#06x} (version {VERSION} defines none)")
    if hlen + _U32.size > src.left:
        raise src.err("header", f"header length {hlen} runs past the end of the file ({src.left} bytes left)")
    body = src.take(hlen, "header")
    (crc,) = _U32.unpack(src.take(_U32.size, "header CRC"))
    if zlib.crc32(body, zlib.crc32(raw)) != crc:
        raise src.err("header", "CRC mismatch: the prefix or the header is corrupt")
    try:
        header = json.loads(bytes(body).decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise src.err("header", f"not valid UTF-8 JSON ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise src.err("header", f"must be a JSON object, got {type(header).__name__}")
    try:
        cfg = config_from_dict(header.get("config"))
    except FormatError as e:
        raise src.err("header", str(e)) from None
    return found, header, cfg


def _read_block_head(src: _In, part: str, tags: tuple[bytes, ...]) -> tuple[bytes, int, int]:
    """(tag, data length, data CRC) of the block at the current position (its header checked)."""
    raw = src.take(BLOCK_HEAD, part)
    tag, n, crc = _BLOCK.unpack_from(raw)
    if zlib.crc32(raw[: _BLOCK.size]) != _U32.unpack_from(raw, _BLOCK.size)[0]:
        raise src.err(part, "block header CRC mismatch: the tag or the length is corrupt")
    if tag not in tags:
        raise src.err(part, f"unexpected block tag {bytes(tag)!r} (expected {' or '.join(map(repr, tags))})")
    if n > src.left:
        raise src.err(part, f"truncated: the block holds {n} bytes, the file has {src.left} left")
    return bytes(tag), n, crc


def _read_block_data(src: _In, part: str, n: int, crc: int) -> bytearray:
    data = src.take(n, part)
    if zlib.crc32(data) != crc:
        raise src.err(part, "data CRC mismatch: the data is corrupt")
    return data


def _shape_of(v) -> tuple[int, ...] | None:
    if isinstance(v, list) and all(type(x) is int and x >= 0 for x in v):
        return tuple(v)
    return None


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    return np.dtype(dtype).itemsize * math.prod(shape)


def _array(data, dtype: str, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    a = np.frombuffer(data, np.dtype(dtype), count=math.prod(shape), offset=offset).reshape(shape)
    return a.astype(a.dtype.newbyteorder("="), copy=False)


def _read_arrays(src: _In, header: dict, expected: list[tuple[str, str, tuple[int, ...]]], what: str):
    """The array blocks of a program, MEM image or state file, checked against `expected` (name, dtype, shape)."""
    spec = header.get("arrays")
    if not isinstance(spec, list) or len(spec) != len(expected):
        n = len(spec) if isinstance(spec, list) else "no"
        raise src.err("header", f"lists {n} arrays; {what} has {len(expected)}")
    for i, (h, (name, dt, shape)) in enumerate(zip(spec, expected)):
        if not isinstance(h, dict) or set(h) != {"name", "dtype", "shape"}:
            raise src.err("header", f"array {i} must be an object with name, dtype and shape")
        if h["name"] != name:
            raise src.err("header", f"array {i} is named {str(h['name'])!r:.60}; {what} has {name!r} there")
        if h["dtype"] != dt:
            raise src.err("header", f"array {name!r} has dtype {str(h['dtype'])!r:.40}; {what} needs {dt!r}")
        if _shape_of(h["shape"]) != shape:
            raise src.err("header", f"array {name!r} has shape {h['shape']!r:.80}; {what} needs {list(shape)}")
    out = []
    for k, (name, dt, shape) in enumerate(expected):
        part = f"block {k} ({name})"
        _, n, crc = _read_block_head(src, part, (TAG_ARRAY,))
        if n != _nbytes(dt, shape):
            raise src.err(part, f"holds {n} bytes; {dt} {list(shape)} is {_nbytes(dt, shape)}")
        a = _array(_read_block_data(src, part, n, crc), dt, shape)
        if a.dtype == np.bool_ and (a.view(np.uint8) > 1).any():
            raise src.err(part, "a bool array holds bytes other than 0 and 1")
        out.append(a)
    if src.left:
        raise src.err("end", f"{src.left} unexpected bytes after the last block")
    return out


def _open(path, kind: str):
    src = _In(path)
    try:
        _, header, cfg = _read_head(src, kind)
    except BaseException:
        src.close()
        raise
    return src, header, cfg


@_reader
def read_program(path) -> tuple[ChipConfig, np.ndarray]:
    """(cfg, encoded program int32 [Q, L, 8]) of a program file; the queue names are checked against the config."""
    src, header, cfg = _open(path, "program")
    with src.f:
        q = header.get("queues")
        names = list(isa.queue_names(cfg))
        if q != names:
            raise src.err("header", f"the queue names are not those of {cfg.name} ({', '.join(names[:3])}, ...)")
        spec = header.get("arrays")
        shape = (
            _shape_of(spec[0].get("shape")) if isinstance(spec, list) and spec and isinstance(spec[0], dict) else None
        )
        L = shape[1] if shape is not None and len(shape) == 3 and shape[1] >= 1 else 1
        (arr,) = _read_arrays(src, header, [("program", "<i4", (len(names), L, isa.N_FIELDS))], f"a {cfg.name} program")
    return cfg, arr


@_reader
def read_mem(path) -> tuple[ChipConfig, np.ndarray]:
    """(cfg, SRAM image uint8 [M, mem_words, L]) of a MEM image file."""
    src, header, cfg = _open(path, "mem")
    with src.f:
        if header.get("mem_names") != list(cfg.mem_names):
            raise src.err("header", f"the MEM slice names are not those of {cfg.name}")
        (image,) = _read_arrays(src, header, [("mem", "|u1", _mem_shape(cfg))], f"a {cfg.name} MEM image")
    return cfg, image


@_reader
def read_state(path):
    """(cfg, MachineState) of a state file: every leaf checked against `init_state(cfg)`'s shape and dtype."""
    import jax
    import jax.numpy as jnp

    src, header, cfg = _open(path, "state")
    with src.f:
        treedef, layout = _state_layout(cfg)
        arrays = _read_arrays(src, header, list(layout), f"a {cfg.name} MachineState")
    return cfg, jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in arrays])


@_reader
def file_kind(path) -> str:
    """ "program", "mem", "state" or "trace", from the file's magic bytes (FormatError for anything else)."""
    with open(os.fspath(path), "rb") as f:
        magic = f.read(8)
    if magic not in _KIND_OF:
        raise FormatError(f"{os.fspath(path)}: magic: not an lpu_jax file (magic {magic!r})")
    return _KIND_OF[magic]


# --------------------------------------------------------------------------- traces
def _trace_layout(cfg: ChipConfig, signals) -> dict[str, list[tuple[str, str, tuple[int, ...]]]]:
    from .trace import columns

    return {s: [(k, _dtype_str(dt), tuple(sh)) for k, (dt, sh) in columns(cfg, s).items()] for s in signals}


class TraceWriter:
    """Writes an event trace chunk by chunk: `append(events)` puts one chunk on disk at once (constant memory).

        with TraceWriter("run.lputrace", cfg, ("issue", "land"), meta={"program": "gemm"}) as w:
            trace.record(cfg, program, None, 10_000, ("issue", "land"), sink=w.append)

    `meta`: any JSON object, stored in the header. `window=(start, stop)`: the cycles the trace covers, if known.
    `compress`: zlib-compress each chunk (level 1; the default: a busy groqchip1 trace shrinks about 5-20x).
    `close()` writes the end block (chunk count and events per signal); leaving the `with` block by an exception
    closes the file without it, so readers see a truncated trace rather than a short one that looks complete.
    """

    def __init__(
        self, path, cfg: ChipConfig, signals: Iterable[str], meta: dict | None = None, *, window=None, compress=True
    ):
        self.path = os.fspath(path)
        self.cfg = cfg
        from .trace import check_signals

        self.signals = check_signals(signals, nonempty=True)
        self.layout = _trace_layout(cfg, self.signals)
        if meta is not None and not isinstance(meta, dict):
            raise ValueError(f"trace meta must be a dict, got {type(meta).__name__}")
        if window is not None:
            if len(window) != 2 or not all(isinstance(x, (int, np.integer)) for x in window):
                raise ValueError(f"window must be (start, stop) cycles, got {window!r}")
            if not 0 <= window[0] <= window[1]:
                raise ValueError(f"window must have 0 <= start <= stop, got {tuple(window)}")
            window = [int(window[0]), int(window[1])]
        header = {
            "config": config_to_dict(cfg),
            "signals": list(self.signals),
            "columns": {
                s: [{"name": k, "dtype": dt, "shape": list(sh)} for k, dt, sh in cols]
                for s, cols in self.layout.items()
            },
            "meta": {} if meta is None else meta,
            "window": window,
            "compression": "zlib" if compress else None,
        }
        self.compress = bool(compress)
        head = _prefix_and_header("trace", header)
        self.chunks = 0
        self.counts = {s: 0 for s in self.signals}
        self._f = open(self.path, "wb")
        self._f.write(head)
        self._f.flush()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lpu-trace-writer")
        self._pending = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abandon()

    def _abandon(self) -> None:
        """Close without the end block (the trace reads as truncated), after the chunk in flight if it can."""
        try:
            self._drain()
        except Exception:
            pass
        self._pool.shutdown()
        self._f.close()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def append(self, events: dict) -> None:
        """Write one chunk: `{signal: {column: array [n, ...]}}` holding every recorded signal and column."""
        if self._f.closed:
            raise ValueError(f"{self.path}: the trace writer is closed")
        extra = [s for s in events if s not in self.layout]
        if extra:
            raise ValueError(f"the events hold signal {extra[0]!r}, which this trace does not record {self.signals}")
        counts, parts = [], []
        for s, cols in self.layout.items():
            if s not in events:
                raise ValueError(f"the events lack signal {s!r} (this trace records {', '.join(self.signals)})")
            ev = events[s]
            if set(ev) != {k for k, _, _ in cols}:
                raise ValueError(f"{s} events have columns {sorted(ev)}; the layout is {[k for k, _, _ in cols]}")
            n = None
            for k, dt, shape in cols:
                a = np.asarray(ev[k])
                if a.ndim != 1 + len(shape) or a.shape[1:] != shape or (n is not None and len(a) != n):
                    want = f"[{'n' if n is None else n}{''.join(f', {d}' for d in shape)}]"
                    raise ValueError(f"{s}.{k} has shape {list(a.shape)}; expected {want}")
                if a.dtype != np.dtype(dt) and not np.can_cast(a.dtype, np.dtype(dt), "safe"):
                    raise ValueError(f"{s}.{k} is {a.dtype}; the layout is {np.dtype(dt)} (no safe cast)")
                n = len(a)
                parts.append(_bytes_of(a.astype(np.dtype(dt), copy=False)))
            counts.append(n)
        parts.insert(0, memoryview(np.asarray([self.chunks, *counts], "<u8").view(np.uint8)))
        self._drain()  # at most one chunk in flight: memory stays bounded, blocks stay in order
        self._pending = self._pool.submit(self._write_chunk, parts)
        self.chunks += 1
        for s, n in zip(self.signals, counts):
            self.counts[s] += n

    def _write_chunk(self, parts) -> None:
        """Compress (zlib releases the GIL, so this overlaps the caller's next chunk) and write one chunk block."""
        if self.compress:  # level 1: most of a trace is zero padding and repeated indices; speed matters more
            raw = b"".join(parts)
            parts = [memoryview(_U64.pack(len(raw))), memoryview(zlib.compress(raw, 1))]
        crc = 0
        for p in parts:
            crc = zlib.crc32(p, crc)
        self._f.write(_block_head(TAG_CHUNK, sum(p.nbytes for p in parts), crc))
        for p in parts:
            self._f.write(p)
        self._f.flush()

    def _drain(self) -> None:
        """Wait for the chunk in flight; its error, if any, is raised here."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """Write the end block and close the file (a second call does nothing)."""
        if self._f.closed:
            return
        try:
            self._drain()
        except BaseException:
            self._abandon()
            raise
        self._pool.shutdown()
        data = np.asarray([self.chunks, *self.counts.values()], "<u8").tobytes()
        self._f.write(_block_head(TAG_END, len(data), zlib.crc32(data)))
        self._f.write(data)
        self._f.close()


def _check_trace_header(src: _In, header: dict, cfg: ChipConfig):
    from .trace import SIGNALS

    signals = header.get("signals")
    if not isinstance(signals, list) or not signals or not all(isinstance(s, str) for s in signals):
        raise src.err("header", "signals must be a non-empty list of signal names")
    for s in signals:
        if s not in SIGNALS:
            raise src.err("header", f"unknown signal {s[:40]!r} (known: {', '.join(SIGNALS)})")
    if len(set(signals)) != len(signals):
        raise src.err("header", "a signal is listed twice")
    layout = _trace_layout(cfg, signals)
    cols = header.get("columns")
    if not isinstance(cols, dict) or set(cols) != set(signals):
        raise src.err("header", "columns must give the layout of every recorded signal")
    for s, want in layout.items():
        got = cols[s]
        if not isinstance(got, list) or len(got) != len(want):
            raise src.err("header", f"{s}: the columns must be {[k for k, _, _ in want]}")
        for g, (k, dt, shape) in zip(got, want):
            if not isinstance(g, dict) or g.get("name") != k:
                raise src.err("header", f"{s}: the columns must be {[k for k, _, _ in want]}")
            if g.get("dtype") != dt or _shape_of(g.get("shape")) != shape or len(g) != 3:
                raise src.err(
                    "header",
                    f"column {s}.{k} is {g.get('dtype')!r:.20} {g.get('shape')!r:.60}; "
                    f"{cfg.name} needs {dt} {list(shape)}",
                )
    if not isinstance(header.get("meta"), dict):
        raise src.err("header", "meta must be a JSON object")
    comp = header.get("compression", "missing")
    if comp not in (None, "zlib"):
        raise src.err("header", f"compression must be null or 'zlib', got {comp!r:.40}")
    w = header.get("window", "missing")
    if w is not None and not (
        isinstance(w, list) and len(w) == 2 and all(type(x) is int for x in w) and 0 <= w[0] <= w[1]
    ):
        raise src.err("header", f"window must be null or [start, stop] with 0 <= start <= stop, got {w!r:.60}")
    return signals, layout


def _scan_trace(src: _In, signals, allow_truncated: bool):
    """Walk the block headers: ([(offset, length, crc) of each chunk], end dict or None if the file was cut short)."""
    chunks = []
    while True:
        k = len(chunks)
        part = f"block {k}"
        if src.left < BLOCK_HEAD:  # nothing, or a block header cut short: the writer did not finish
            if allow_truncated:
                return chunks, None
            raise src.err(
                "end block",
                f"missing: the trace is truncated after {k} complete chunk(s) (its writer did not close it); "
                "iter_trace(path, allow_truncated=True) reads the complete chunks",
            )
        raw = src.take(BLOCK_HEAD, part)
        tag, n, crc = _BLOCK.unpack_from(raw)
        if zlib.crc32(raw[: _BLOCK.size]) != _U32.unpack_from(raw, _BLOCK.size)[0]:
            raise src.err(part, "block header CRC mismatch: the tag or the length is corrupt")
        if tag not in (TAG_CHUNK, TAG_END):
            raise src.err(part, f"unexpected block tag {bytes(tag)!r} (expected {TAG_CHUNK!r} or {TAG_END!r})")
        if n > src.left:
            if allow_truncated and tag == TAG_CHUNK:
                return chunks, None  # the last chunk was cut short
            raise src.err(part, f"truncated: the block holds {n} bytes, the file has {src.left} left")
        if tag == TAG_CHUNK:
            chunks.append((src.pos, n, crc))
            src.seek(src.pos + n)
            continue
        part = f"block {k} (end block)"
        if n != 8 * (1 + len(signals)):
            raise src.err(
                part, f"holds {n} bytes; the end block of {len(signals)} signal(s) holds {8 + 8 * len(signals)}"
            )
        data = np.frombuffer(_read_block_data(src, part, n, crc), "<u8")
        if src.left:
            raise src.err("end", f"{src.left} unexpected bytes after the end block")
        end = {"chunks": int(data[0]), "counts": {s: int(c) for s, c in zip(signals, data[1:])}}
        if end["chunks"] != len(chunks):
            raise src.err(part, f"counts {end['chunks']} chunks; the file holds {len(chunks)}")
        return chunks, end


def _inflate(src: _In, part: str, data) -> bytes:
    """The chunk bytes of a compressed chunk block: uint64 length, then a zlib stream of exactly that length."""
    if len(data) < 8:
        raise src.err(part, f"holds {len(data)} bytes, too few for a compressed chunk's length")
    n = _U64.unpack_from(data)[0]
    if n > 1100 * (len(data) - 8) + 64:  # zlib expands at most about 1032:1
        raise src.err(part, f"claims {n} uncompressed bytes from {len(data) - 8}: impossible for zlib")
    d = zlib.decompressobj()
    try:
        out = d.decompress(memoryview(data)[8:], n)
    except zlib.error as e:
        raise src.err(part, f"the compressed data is corrupt ({e})") from None
    if len(out) != n or not d.eof or d.unconsumed_tail or d.unused_data:
        raise src.err(part, f"the compressed data does not inflate to exactly its {n} bytes")
    return out


def _read_chunk(src: _In, k: int, where: tuple[int, int, int], layout, compressed: bool = False) -> dict:
    off, n, crc = where
    part = f"block {k} (chunk {k})"
    src.seek(off)
    data = _read_block_data(src, part, n, crc)
    if compressed:
        data = _inflate(src, part, data)
        n = len(data)
    ns = len(layout)
    if n < 8 * (1 + ns):
        raise src.err(part, f"holds {n} bytes, too few for its index and {ns} event counts")
    index, *counts = (int(c) for c in np.frombuffer(data, "<u8", count=1 + ns))
    if index != k:
        raise src.err(part, f"is chunk {index} of its trace, expected chunk {k} (chunks lost or out of order)")
    size = 8 * (1 + ns) + sum(
        c * sum(_nbytes(dt, sh) for _, dt, sh in cols) for c, cols in zip(counts, layout.values())
    )
    if size != n:
        raise src.err(part, f"holds {n} bytes; its event counts {counts} need {size}")
    out, pos = {}, 8 * (1 + ns)
    for c, (s, cols) in zip(counts, layout.items()):
        out[s] = {}
        for name, dt, shape in cols:
            out[s][name] = _array(data, dt, (c, *shape), pos)
            pos += _nbytes(dt, (c, *shape))
    return out


def _chunks(path: str, chunks, end, layout, compressed: bool) -> Iterator[dict]:
    src = _In(path)
    try:
        totals = dict.fromkeys(layout, 0)
        for k, where in enumerate(chunks):
            try:
                ev = _read_chunk(src, k, where, layout, compressed)
            except FormatError:
                raise
            except Exception as e:  # the file changed, or a check this module lacks
                raise src.err(f"block {k} (chunk {k})", f"unreadable ({type(e).__name__}: {e})") from e
            for s in layout:
                totals[s] += len(ev[s]["cycle"])
            yield ev
        if end is not None:
            for s, n in end["counts"].items():
                if totals[s] != n:
                    raise src.err("end block", f"counts {n} {s} events; the chunks hold {totals[s]}")
    finally:
        src.close()


@_reader
def iter_trace(path, allow_truncated: bool = False):
    """(cfg, header, iterator of Events chunks): the trace one chunk in memory at a time.

    The header and every block header are checked first (a trace without its end block raises FormatError
    saying it is truncated); each chunk's CRC and layout as it is read, and at the end the totals against the end
    block. `allow_truncated=True` reads an unfinished trace (its writer crashed): the iterator yields the
    complete chunks and stops where the file was cut. `header["end"]` is {"chunks": k, "counts": {signal: n}}
    from the end block, or None for an unfinished trace.
    """
    src, header, cfg = _open(path, "trace")
    with src.f:
        signals, layout = _check_trace_header(src, header, cfg)
        chunks, end = _scan_trace(src, signals, allow_truncated)
    header["end"] = end
    return cfg, header, _chunks(src.path, chunks, end, layout, header["compression"] == "zlib")


@_reader
def read_trace(path):
    """(cfg, header, Events): a whole trace, its chunks joined (see `iter_trace`; a truncated trace is an error)."""
    from .trace import concat, empty

    cfg, header, it = iter_trace(path)
    parts = list(it)
    return cfg, header, concat(parts) if parts else empty(cfg, header["signals"])
