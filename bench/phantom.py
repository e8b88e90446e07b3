"""A case shaped like a real one: a CT series of a phantom, an RT plan, a few text logs.

The CT is an elliptic water body (0 HU, noise sigma 12 HU) with two lungs (-800 HU)
and a spine (+700 HU) inside a 500 mm field of view; air inside the field of view is
-1000 HU with noise sigma 5 HU, the corners outside it hold the scanner's padding value
(-3024 HU). Stored as CT Image Storage, 16-bit signed, rescale intercept 0, one
512x512 slice per file. The noise matters: without it the slices would compress far
better than real ones do. With ``pydicom`` (the ``bench`` extra) the files are real
DICOM (explicit VR little endian); without it they are DICOM-like (128-byte preamble,
``DICM``, a short header, the raw pixels). numpy is needed either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 512


def _slice_hu(rng: np.random.Generator, z: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cx = cy = (SIZE - 1) / 2
    img = np.full((SIZE, SIZE), -3024.0, dtype=np.float32)
    fov = (xx - cx) ** 2 + (yy - cy) ** 2 <= (SIZE / 2) ** 2
    img[fov] = -1000 + rng.normal(0, 5, int(fov.sum()))
    # the body narrows towards the ends of the series
    a, b = 190 * (0.85 + 0.15 * z), 130 * (0.85 + 0.15 * z)
    body = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    img[body] = rng.normal(0, 12, int(body.sum()))
    for side in (-1, 1):
        lung = ((xx - cx - side * 80) / 55) ** 2 + ((yy - cy + 10) / 75) ** 2 <= 1
        img[lung] = -800 + rng.normal(0, 20, int(lung.sum()))
    spine = (xx - cx) ** 2 + (yy - cy - 90) ** 2 <= 22**2
    img[spine] = 700 + rng.normal(0, 30, int(spine.sum()))
    return np.clip(np.rint(img), -32768, 32767).astype("<i2")


def _write_dicom(path: Path, pixels: np.ndarray, index: int, z_mm: float) -> None:
    try:
        from pydicom.dataset import FileDataset, FileMetaDataset
        from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
    except ImportError:
        head = f"CT slice {index} z={z_mm:.1f} 512x512 int16\n".encode()
        path.write_bytes(b"\0" * 128 + b"DICM" + head.ljust(256, b" ") + pixels.tobytes())
        return
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName = "PHANTOM^WATER"
    ds.PatientID = "PH0001"
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [-250.0, -250.0, z_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.9765625, 0.9765625]
    ds.SliceThickness = 1.0
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_case(root: Path, slices: int = 300, seed: int = 1) -> int:
    """Write the case under ``root``; returns its total bytes."""
    rng = np.random.default_rng(seed)
    (root / "CT").mkdir(parents=True)
    for i in range(slices):
        z = 1 - abs(2 * i / max(1, slices - 1) - 1)
        _write_dicom(root / "CT" / f"CT.{i:04d}.dcm", _slice_hu(rng, z), i, float(i))
    # RT plan: DICOM-ish header and ~200 KB of control points (numbers, compress well)
    points = "\n".join(
        f"CP {i} gantry {i % 360:.1f} energy {70 + i % 160:.2f} MU {rng.random():.6f}"
        for i in range(4000)
    )
    (root / "RTPLAN.dcm").write_bytes(b"\0" * 128 + b"DICM" + points.encode())
    logs = root / "logs"
    logs.mkdir()
    for n in range(3):
        lines = (
            f"2025-05-0{n + 1} 10:{m // 60:02d}:{m % 60:02d} INFO step {m} ok" for m in range(3000)
        )
        (logs / f"treatment_{n}.log").write_text("\n".join(lines) + "\n")
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
