"""Where an export writes: the output layout of each binary, and the output folder's checks.

Part of the orchestration layer of `export/` (used by `export_lib.export_model`). It owns
`OutputLayout` (the folder, the artefact paths and which folder entries are ours),
`layout_for` (what `--out` names in each binary), `int8_path` (where the int8 TFLite model goes
beside the float one) and `prepare_output` (create the folder, check
it is writable and free, and with `overwrite` remove our old artefacts and nothing else).
"""

import dataclasses
import os
import shutil
import tempfile

from export.common import (
    EXIT_USAGE,
    ONNX_NAME,
    REPORT_NAME,
    SAVEDMODEL_ENTRIES,
    SAVEDMODEL_NAME,
    TFLITE_INT8_SUFFIX,
    TFLITE_NAME,
    ExportError,
)

# The binaries whose --out names one file (the format's), with that file's extension.
_FILE_MODES = {"onnx": ".onnx", "tflite": ".tflite"}


def int8_path(tflite_path):
    """`model.tflite` -> `model_int8.tflite`: where the int8 model goes beside the float one."""
    stem, ext = os.path.splitext(tflite_path)
    return stem + TFLITE_INT8_SUFFIX + ext


@dataclasses.dataclass
class OutputLayout:
    """Where the artefacts go. `folder` is checked and created; `entries` are ours in it."""

    folder: str
    savedmodel: str = None
    onnx: str = None
    tflite: str = None
    report: str = None

    @property
    def tflite_int8(self):
        """The int8 model's path (written with `tflite_quantize="int8"`; always ours)."""
        return None if self.tflite is None else int8_path(self.tflite)

    @property
    def entries(self):
        if self.savedmodel is not None and os.path.abspath(self.savedmodel) == \
                os.path.abspath(self.folder):
            own = list(SAVEDMODEL_ENTRIES)
        else:
            own = [os.path.basename(p) for p in (self.savedmodel,) if p is not None]
        own += [os.path.basename(p) for p in (self.onnx, self.tflite, self.tflite_int8,
                                              self.report) if p is not None]
        return own


def layout_for(out, formats, mode="combined"):
    """The output layout of a binary.

    `mode="combined"` (`python -m export`): `out` is a folder that receives `saved_model/`,
    `model.onnx`, `model.tflite` (and `model_int8.tflite`) and `export_report.json`.
    `mode="savedmodel"`: `out` is the SavedModel folder itself, with the report inside it.
    `mode="onnx"` / `mode="tflite"`: `out` is the `.onnx` / `.tflite` file and the report goes
    beside it (and the int8 TFLite model too, as `<name>_int8.tflite`).
    """
    if not out:
        raise ExportError("Expected an output path, received: out=''", EXIT_USAGE)
    out = os.fspath(out)
    if mode == "combined":
        return OutputLayout(
            folder=out,
            savedmodel=os.path.join(out, SAVEDMODEL_NAME) if "savedmodel" in formats else None,
            onnx=os.path.join(out, ONNX_NAME) if "onnx" in formats else None,
            tflite=os.path.join(out, TFLITE_NAME) if "tflite" in formats else None,
            report=os.path.join(out, REPORT_NAME),
        )
    if mode == "savedmodel":
        return OutputLayout(folder=out, savedmodel=out, report=os.path.join(out, REPORT_NAME))
    if mode in _FILE_MODES:
        ext = _FILE_MODES[mode]
        if not out.endswith(ext):
            raise ExportError(f"Expected an output file ending in {ext}, received: out={out!r}",
                              EXIT_USAGE)
        folder = os.path.dirname(out) or "."
        return OutputLayout(folder=folder, report=os.path.join(folder, REPORT_NAME),
                            **{mode: out})
    raise ExportError(
        "Expected mode 'combined', 'savedmodel', 'onnx' or 'tflite', received: "
        f"mode={mode!r}", EXIT_USAGE
    )


def prepare_output(layout, overwrite, mode="combined"):
    """Creates the output folder and checks it is writable and free.

    A folder (combined and SavedModel modes) must be empty unless `overwrite`; the `.onnx` and
    `.tflite` modes only refuse to replace their own files and report. With `overwrite` our own
    entries are removed; anything else in the folder is left alone.
    """
    folder = layout.folder
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ExportError(f"Output folder {folder} exists and is not a folder", EXIT_USAGE)
    if os.path.isdir(folder):
        present = sorted(os.listdir(folder))
        ours = [e for e in layout.entries if e in present]
        blocking = ours if mode in _FILE_MODES else present
        if blocking and not overwrite:
            shown = ", ".join(blocking[:5]) + (", ..." if len(blocking) > 5 else "")
            what = (f"Output {layout.onnx or layout.tflite} or its report already exists"
                    if mode in _FILE_MODES else f"Output folder {folder} is not empty")
            raise ExportError(f"{what} (holds {shown}); pass --overwrite to replace the "
                              "export artefacts", EXIT_USAGE)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ExportError(
            f"Output folder {folder} is not writable ({e.strerror or e}): choose another --out",
            EXIT_USAGE,
        ) from e
    if overwrite:
        for entry in layout.entries:
            path = os.path.join(folder, entry)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.remove(path)
            except OSError as e:
                raise ExportError(f"Cannot remove the old artefact {path} ({e})",
                                  EXIT_USAGE) from e
