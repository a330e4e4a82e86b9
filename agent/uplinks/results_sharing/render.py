"""A single-frame DICOM image rendered as JPEG (WADO-URI's image/jpeg): decoded by pydicom (with
the pylibjpeg codecs), modality and VOI LUTs applied, scaled to 8 bits, encoded by Pillow."""

from __future__ import annotations

import io
from pathlib import Path

from agent.errors import AgentError


class NotRenderable(AgentError):
    """The image cannot be served as JPEG (the reason is the 406's text)."""


def render_jpeg(path: Path, quality: int = 90) -> bytes:
    """The JPEG of a single-frame image; NotRenderable saying why not."""
    try:
        import numpy as np
        from PIL import Image
        from pydicom import dcmread
        from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
    except ImportError as err:  # Pillow is what encodes: a build without it serves DICOM only
        reason = f"image/jpeg: no encoder here ({err.name}); ask application/dicom"
        raise NotRenderable(reason) from err
    ds = dcmread(path)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise NotRenderable("image/jpeg: a multi-frame image; ask application/dicom")
    if "PixelData" not in ds:
        raise NotRenderable("image/jpeg: the object has no image; ask application/dicom")
    try:
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError) as err:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise NotRenderable(f"image/jpeg: cannot decode transfer syntax {syntax}") from err
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # pydicom gives YBR images as RGB
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    elif pixels.ndim == 2:
        values = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else values * 0.0
        if photometric == "MONOCHROME1":
            scaled = 255.0 - scaled
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    else:
        raise NotRenderable(f"image/jpeg: {photometric} is not rendered; ask application/dicom")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
