"""Atomic file output: a reader never sees a half-written file, and Ctrl-C leaves none behind."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


#: hidden folder beside the outputs that holds files being written: a hard kill can leave a file
#: there, but never one that a folder listing (nnU-Net's ``subfiles``) takes for a finished case
TEMP_DIR_NAME = ".nnunet_anomaly_tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for `path`; on success it replaces `path` in one rename.

    The temporary file lives in a hidden sub-folder of the destination (:data:`TEMP_DIR_NAME`, same
    file system, so the rename is atomic) and keeps the final suffixes (``.nii.gz``, ``.png``), so
    writers that choose the format from the file name work unchanged. On any exception the
    temporary file is removed and `path` is left as it was; after a hard kill (SIGKILL, power loss)
    only the hidden folder holds a leftover, which no listing of the destination folder shows and
    :func:`remove_stale_temporaries` deletes.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text(), sorted(p.name for p in out.parent.iterdir())
    ('done', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    temp_dir = path.parent / TEMP_DIR_NAME
    for attempt in range(5):  # another writer may remove the (empty) folder between our mkdir and mkstemp
        temp_dir.mkdir(exist_ok=True)
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=f".tmp{suffix}", dir=temp_dir)
            break
        except FileNotFoundError:
            if attempt == 4:
                raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file owner-only (0600); give the result the usual umask-based mode.
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(OSError):  # not empty (another writer) or already gone: fine
            temp_dir.rmdir()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete what interrupted writes left in `folder`; return the deleted paths.

    That is the hidden :data:`TEMP_DIR_NAME` folder and, from earlier versions that wrote temporary
    files beside their destination, hidden files named ``.<name>.<random>.tmp<suffix>``. Call it
    only when no writer is active in `folder` (at the start of a run).
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    temp_dir = folder / TEMP_DIR_NAME
    if temp_dir.is_dir():
        for leftover in temp_dir.iterdir():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
        with contextlib.suppress(OSError):
            temp_dir.rmdir()
    for leftover in folder.glob(".*.tmp*"):
        if leftover.is_file() and ".tmp" in leftover.name:
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any, *, indent: int = 2) -> Path:
    """Write `data` as JSON to `path` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, sort_keys=False) + "\n", encoding="utf-8")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


# ---------------------------------------------------------------------------------------------
# reading files in full: a truncated file is an error that names it, never silently short data
# ---------------------------------------------------------------------------------------------
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI_HEADER_BYTES = {348: "<", 0x5C010000: ">"}  # sizeof_hdr of NIfTI-1, read little / big endian
_SITK_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


class IncompleteFileError(ValueError):
    """A file ends before the data its own header or compression stream announces."""


def _incomplete(path: Path, detail: str) -> IncompleteFileError:
    return IncompleteFileError(f"{path}: incomplete file ({detail}); it was probably cut short while being "
                               "written, copied or downloaded")


def _gunzip_length(path: Path, *, keep_prefix: int = 0) -> tuple[int, bytes]:
    """Decompress a whole gzip file (every member); return (uncompressed size, its first `keep_prefix` bytes).

    Raises IncompleteFileError when the stream stops early or fails its CRC/length check.
    """
    import zlib

    size, prefix = 0, b""
    with open(path, "rb") as handle:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = b""
        while True:
            chunk = pending or handle.read(1 << 20)
            pending = b""
            if not chunk:
                break
            try:
                out = decompressor.decompress(chunk)
            except zlib.error as error:
                raise _incomplete(path, f"corrupt gzip data: {error}") from None
            size += len(out)
            if len(prefix) < keep_prefix:
                prefix += out[: keep_prefix - len(prefix)]
            if decompressor.eof:  # end of one member: another may follow (concatenated gzip)
                rest = decompressor.unused_data
                if not rest:
                    rest = handle.read(2)
                    if not rest:
                        return size, prefix
                if rest[:2] != _GZIP_MAGIC:
                    return size, prefix  # trailing garbage after a complete stream, as gzip tolerates
                decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                pending = rest
    raise _incomplete(path, f"the gzip stream ends after {size} uncompressed bytes, before its end marker")


def _nifti_data_end(header: bytes) -> int | None:
    """Offset of the last data byte + 1 that a NIfTI-1/2 header announces (None if not NIfTI)."""
    import struct

    if len(header) < 4:
        return None
    for endian in "<>":
        sizeof_hdr = struct.unpack(endian + "i", header[:4])[0]
        if sizeof_hdr == 348 and len(header) >= 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = struct.unpack(endian + "f", header[108:112])[0]
        elif sizeof_hdr == 540 and len(header) >= 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
        else:
            continue
        ndim = dims[0]
        if not 0 < ndim <= 7 or bitpix <= 0:
            return None
        voxels = 1
        for n in dims[1 : ndim + 1]:
            voxels *= max(int(n), 1)
        return int(vox_offset) + voxels * bitpix // 8
    return None


def check_complete(path: str | os.PathLike) -> Path:
    """Check that a file holds all the data it announces; return its path.

    Readers such as SimpleITK accept a gzip stream cut anywhere and an uncompressed NIfTI shorter
    than its header says, and return short or zero-filled data without an error. This check reads
    the file in full first:

    * gzip files (``.gz``, by their magic bytes): the whole stream decompresses, its CRC and length
      match, and for ``.nii.gz`` the data are as long as the header announces;
    * ``.nii``: the file is as long as the header announces;
    * ``.npy``: as long as its header's shape and dtype need; ``.npz``: every member passes its CRC;
    * ``.png``: every chunk is present and passes its CRC (PIL's ``verify``);
    * ``.json``: parses.

    Other formats (``.mha``, ``.nrrd``, DICOM) are left to their readers, which detect truncation.

    Raises
    ------
    FileNotFoundError
        If `path` is not a file.
    IncompleteFileError (a ValueError)
        One line naming the file and what is missing.

    Examples
    --------
    >>> import gzip, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt.gz"
    >>> _ = path.write_bytes(gzip.compress(b"x" * 1000)[:-6])
    >>> check_complete(path)
    Traceback (most recent call last):
    ...
    nnunet_anomaly._io.IncompleteFileError: ...a.txt.gz: incomplete file (the gzip stream ends after 1000 uncompressed bytes, before its end marker); it was probably cut short while being written, copied or downloaded
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    name = path.name.lower()
    with open(path, "rb") as handle:
        head = handle.read(540)
    if head[:2] == _GZIP_MAGIC:
        size, prefix = _gunzip_length(path, keep_prefix=540)
        if name.endswith((".nii.gz", ".nii")):
            if size < 348:
                raise _incomplete(path, f"{size} bytes, shorter than a NIfTI header (348)")
            end = _nifti_data_end(prefix)
            if end is not None and size < end:
                raise _incomplete(path, f"the header announces {end} bytes of NIfTI data, the stream holds {size}")
        return path
    if name.endswith(".nii"):
        if len(head) < 348:
            raise _incomplete(path, f"{len(head)} bytes, shorter than a NIfTI header (348)")
        end = _nifti_data_end(head)
        size = path.stat().st_size
        if end is not None and size < end:
            raise _incomplete(path, f"the header announces {end} bytes, the file has {size}")
    elif name.endswith(".npy"):
        _check_npy(path)
    elif name.endswith(".npz"):
        _check_npz(path)
    elif name.endswith(".png"):
        _check_png(path)
    elif name.endswith(".json"):
        read_json(path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a file cut short (or otherwise not JSON) is one error line naming it.

    Raises
    ------
    FileNotFoundError
        If `path` is not a file.
    IncompleteFileError (a ValueError)
        If it does not parse.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _incomplete(path, f"not valid JSON: {error}") from None


def _check_npy(path: Path) -> None:
    import numpy as np

    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:  # (2, 0); version 3.0 differs only in the header's text encoding
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
    except ValueError as error:
        raise _incomplete(path, f"unreadable .npy header: {error}") from None
    if dtype.hasobject:
        return  # pickled objects: no fixed size (and never loaded: allow_pickle is off everywhere)
    needed = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < needed:
        raise _incomplete(path, f"the header announces {needed} bytes, the file has {size}")


def _check_npz(path: Path) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise _incomplete(path, f"not a complete .npz (zip) archive: {error}") from None
    except Exception as error:  # zlib.error and friends from a member cut short
        raise _incomplete(path, f"a member of the .npz archive is damaged: {type(error).__name__}: {error}") from None
    if bad is not None:
        raise _incomplete(path, f"the member {bad!r} fails its CRC check")


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every complete PNG ends with


def _check_png(path: Path) -> None:
    from PIL import Image

    with open(path, "rb") as handle:
        handle.seek(max(path.stat().st_size - len(_PNG_END), 0))
        if handle.read() != _PNG_END:
            raise _incomplete(path, "the PNG does not end with its IEND chunk")

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises SyntaxError, OSError, struct.error... for cut files
        raise _incomplete(path, f"PNG check failed: {type(error).__name__}: {error}") from None


def read_image(path: str | os.PathLike):
    """Read a SimpleITK image (NIfTI, MHA, NRRD) after :func:`check_complete`; errors are one line naming it.

    Returns
    -------
    SimpleITK.Image
    """
    import SimpleITK as sitk

    path = check_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = next((line for line in lines if "not read completely" in line or "expected" in line), lines[-1] if lines else "")
        raise ValueError(f"{path}: SimpleITK cannot read it ({detail})") from None


def read_array(path: str | os.PathLike, *, npz_key: str | None = "probabilities"):
    """Read an image or array file in full as a numpy array, with one clear error line naming a bad file.

    ``.nii.gz``/``.nii``/``.mha``/``.nrrd`` through SimpleITK (array order ``(Z, Y, X)``), ``.png``
    through PIL, ``.npy`` and ``.npz`` through numpy (``npz_key``, or the only array). Every file
    passes :func:`check_complete` first, so a truncated file is an error, not short data.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
    >>> import numpy as np; np.save(path, np.arange(6).reshape(2, 3))
    >>> read_array(path).tolist()
    [[0, 1, 2], [3, 4, 5]]
    >>> _ = path.write_bytes(path.read_bytes()[:-8])
    >>> read_array(path)
    Traceback (most recent call last):
    ...
    nnunet_anomaly._io.IncompleteFileError: ...a.npy: incomplete file (the header announces 176 bytes, the file has 168); it was probably cut short while being written, copied or downloaded
    """
    import numpy as np

    path = Path(path)
    name = path.name.lower()
    if name.endswith(_SITK_ENDINGS):  # read_image checks the file and names it in its errors
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(read_image(path))
    path = check_complete(path)
    try:
        if name.endswith(".png"):
            from PIL import Image

            with Image.open(path) as image:
                return np.asarray(image)
        if name.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                if npz_key is not None and npz_key in archive.files:
                    return archive[npz_key]
                if len(archive.files) == 1:
                    return archive[archive.files[0]]
                raise ValueError(f"{path}: expected the key {npz_key!r} (nnU-Net's --save_probabilities) or a "
                                 f"single array; found {archive.files}")
    except ValueError:
        raise
    except Exception as error:  # an unreadable file: name it, keep the library's one-line reason
        reason = str(error).strip().splitlines()
        raise ValueError(f"{path}: cannot read it ({type(error).__name__}: {reason[-1] if reason else ''})") from None
    raise ValueError(f"{path}: unsupported file type (expected .nii.gz, .nii, .mha, .nrrd, .png, .npy or .npz)")
