"""Lesson 6: data loading and processing (数据加载和处理) — a face-landmarks Dataset, transforms, DataLoader.

scikit-image reads and transforms the images; pandas parses the CSV. Each sample is a dict
{'image': (H, W, 3) array, 'landmarks': (68, 2) array of (x, y) pixel coordinates}.

Run: `python -m foundations.landmarks --data data/faces`   (add --download to fetch faces.zip)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skimage import io, transform
from torch.utils.data import DataLoader, Dataset  # Fix: the notes import the module `dataset` and subclass it

FACES_URL = "https://download.pytorch.org/tutorial/faces.zip"
# The archive's own sha256 was not available where this was written (no internet), so the download is
# checked by the sha256 of the CSV inside it, computed from the real file. Pass known_hash to check the zip.
FACES_ZIP_SHA256: str | None = None
FACES_CSV_SHA256 = "00ffdadf042e6188dc7dd99aa621734c87a86ebb50852735080f41d91cb7d1f2"
WHERE_TO_GET = (
    "face landmarks not found at {path} (expected face_landmarks.csv and the .jpg files there): "
    "rerun with --download to fetch " + FACES_URL
)


def read_landmarks_row(csv_file: str | Path, n: int = 65) -> tuple[str, np.ndarray]:
    """(image name, landmarks (68, 2) float) of row n, as the notes' first example."""
    landmarks_frame = pd.read_csv(csv_file)
    img_name = landmarks_frame.iloc[n, 0]
    landmarks = landmarks_frame.iloc[n, 1:].to_numpy().astype("float").reshape(-1, 2)  # (68, 2): x, y
    return img_name, landmarks


class FaceLandmarksDataset(Dataset):
    """Face landmarks: the CSV is read in __init__, each image only in __getitem__ (saves memory)."""

    def __init__(self, csv_file: str | Path, root_dir: str | Path, transform=None) -> None:
        self.landmarks_frame = pd.read_csv(csv_file)
        self.root_dir = root_dir
        self.transform = transform

    def __len__(self) -> int:
        return len(self.landmarks_frame)

    def __getitem__(self, idx: int) -> dict:
        """{'image': (H, W, 3) uint8, 'landmarks': (68, 2) float64}, then the transform if any."""
        if torch.is_tensor(idx):
            idx = idx.item()
        img_name = os.path.join(self.root_dir, self.landmarks_frame.iloc[idx, 0])  # Fix: the notes' `os.paht`
        image = io.imread(img_name)
        # Fix: the notes write `np.array([landmarks])` with `landmarks` never defined; read this row's columns.
        landmarks = self.landmarks_frame.iloc[idx, 1:].to_numpy()
        landmarks = landmarks.astype("float").reshape(-1, 2)  # (68, 2)
        sample = {"image": image, "landmarks": landmarks}
        if self.transform:
            sample = self.transform(sample)
        return sample


class Rescale:
    """Rescale the image to output_size: an int matches the *smaller* edge (aspect kept); a tuple is (h, w)."""

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        assert isinstance(output_size, (int, tuple))
        self.output_size = output_size

    def __call__(self, sample: dict) -> dict:
        image, landmarks = sample["image"], sample["landmarks"]
        h, w = image.shape[:2]
        if isinstance(self.output_size, int):
            # Fix: the notes' h > w branch gives (size*h/w, size*w/h), which changes the aspect ratio and
            # leaves neither edge at `size`. The smaller edge (w here) must become `size`.
            if h > w:
                new_h, new_w = self.output_size * h / w, self.output_size
            else:
                new_h, new_w = self.output_size, self.output_size * w / h
        else:
            new_h, new_w = self.output_size  # Fix: the notes assign the whole tuple to both edges
        new_h, new_w = int(new_h), int(new_w)
        img = transform.resize(image, (new_h, new_w))  # float64 in [0, 1]
        # x scales with the width, y with the height (landmarks are (x, y))
        landmarks = landmarks * [new_w / w, new_h / h]
        return {"image": img, "landmarks": landmarks}


class RandomCrop:
    """Crop a random output_size window (an int gives a square); landmarks move with the window."""

    def __init__(self, output_size: int | tuple[int, int], rng: np.random.Generator | None = None) -> None:
        assert isinstance(output_size, (int, tuple))
        if isinstance(output_size, int):
            self.output_size = (output_size, output_size)
        else:
            assert len(output_size) == 2
            self.output_size = output_size
        # None: numpy's global generator, which DataLoader reseeds per worker (a held Generator would be
        # copied into every worker and give them all the same crops).
        self.rng = rng

    def __call__(self, sample: dict) -> dict:
        image, landmarks = sample["image"], sample["landmarks"]
        h, w = image.shape[:2]
        new_h, new_w = self.output_size
        if new_h > h or new_w > w:
            raise ValueError(f"RandomCrop{self.output_size} is larger than the image ({h}, {w})")
        randint = self.rng.integers if self.rng is not None else np.random.randint
        # Fix: the notes call randint(0, h - new_h); its upper bound is exclusive, so an image exactly the
        # crop size raises (randint(0, 0)) and the last valid offset is never chosen. Use h - new_h + 1.
        top = int(randint(0, h - new_h + 1))
        left = int(randint(0, w - new_w + 1))
        image = image[top : top + new_h, left : left + new_w]
        landmarks = landmarks - [left, top]  # (x, y) shift by the window's corner
        return {"image": image, "landmarks": landmarks}


class ToTensor:
    """ndarrays to tensors; image (H, W, C) -> (C, H, W), as torch expects (颜色轴交换)."""

    def __call__(self, sample: dict) -> dict:
        image, landmarks = sample["image"], sample["landmarks"]
        image = np.ascontiguousarray(image.transpose((2, 0, 1)))
        return {"image": torch.from_numpy(image), "landmarks": torch.from_numpy(landmarks)}


def composed_transforms(rescale: int = 256, crop: int = 224) -> dict:
    """The notes' three transforms to compare: Rescale, RandomCrop, and Compose([Rescale, RandomCrop])."""
    from torchvision import transforms  # only the composition needs torchvision

    return {
        "Rescale": Rescale(rescale),
        "RandomCrop": RandomCrop(128),
        "Compose": transforms.Compose([Rescale(rescale), RandomCrop(crop)]),
    }


def _pyplot():
    """matplotlib with the headless Agg backend (the notes' plt.ion()/plt.pause() need a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def show_landmarks(ax, image: np.ndarray, landmarks: np.ndarray) -> None:
    """Draw an image with its landmarks as green dots on an axis."""
    ax.imshow(image)
    ax.scatter(landmarks[:, 0], landmarks[:, 1], s=10, marker=".", c="g")
    ax.axis("off")


def _save(fig, path: str | Path) -> Path:
    """Save a figure through a temp file and a rename, then close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def save_samples_png(samples: list[tuple[str, dict]], path: str | Path) -> Path:
    """One panel per (title, sample) with its landmarks, saved as a PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(samples), figsize=(3 * len(samples), 3.4), squeeze=False)
    for ax, (title, sample) in zip(axes[0], samples, strict=True):
        show_landmarks(ax, sample["image"], sample["landmarks"])
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def save_batch_png(sample_batched: dict, path: str | Path) -> Path:
    """A DataLoader batch {'image': (B, C, H, W), 'landmarks': (B, 68, 2)} as one grid with landmarks."""
    from torchvision import utils

    plt = _pyplot()
    images, landmarks = sample_batched["image"], sample_batched["landmarks"]
    batch_size, im_size = len(images), images.size(2)
    grid_border = 2  # make_grid's default padding
    grid = utils.make_grid(images, padding=grid_border)
    fig, ax = plt.subplots(figsize=(3 * batch_size, 3.4))
    ax.imshow(grid.numpy().transpose((1, 2, 0)))
    for i in range(batch_size):
        # each image sits im_size + padding further right in the grid
        x = landmarks[i, :, 0].numpy() + i * (im_size + grid_border) + grid_border
        y = landmarks[i, :, 1].numpy() + grid_border
        ax.scatter(x, y, s=10, marker=".", c="r")
    ax.axis("off")
    ax.set_title("Batch from dataloader")
    fig.tight_layout()
    return _save(fig, path)


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_faces(
    root: str | Path,
    url: str = FACES_URL,
    known_hash: str | None = FACES_ZIP_SHA256,
    csv_sha256: str | None = FACES_CSV_SHA256,
) -> Path:
    """Download faces.zip into root, check it, unzip; returns root/faces. Raises ValueError on a bad hash."""
    import pooch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # pooch downloads to a temp file, checks known_hash (e.g. "sha256:..."), and deletes a mismatch.
    archive = Path(pooch.retrieve(url, known_hash=known_hash, fname="faces.zip", path=root, progressbar=True))
    staging = root / "faces.unzip.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():  # refuse paths that would escape the folder
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"unsafe path in {archive.name}: {name}")
        zf.extractall(staging)
    found = list(staging.rglob("face_landmarks.csv"))
    if len(found) != 1:
        shutil.rmtree(staging)
        raise ValueError(f"{archive.name} holds {len(found)} face_landmarks.csv files, expected 1")
    if csv_sha256 is not None and sha256_of(found[0]) != csv_sha256:
        shutil.rmtree(staging)
        archive.unlink()
        raise ValueError(f"face_landmarks.csv in {archive.name} has the wrong sha256; deleted the download")
    target = root / "faces"
    shutil.rmtree(target, ignore_errors=True)
    found[0].parent.replace(target)  # the finished folder appears in one step
    shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """Load the faces, show transforms and a DataLoader batch, save the plots as PNGs."""
    parser = argparse.ArgumentParser(description="Lesson 6: a face-landmarks Dataset, transforms and a DataLoader.")
    parser.add_argument(
        "--data", default="data/faces", help="folder with face_landmarks.csv and the images (default data/faces)"
    )
    parser.add_argument(
        "--download", action="store_true", help=f"download {FACES_URL} into the parent of --data if missing"
    )
    parser.add_argument("--out", default="runs/landmarks", help="folder for the PNG plots (default runs/landmarks)")
    parser.add_argument("--batch-size", type=int, default=4, help="DataLoader batch size (default 4)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random crops and shuffling (default 0)")
    args = parser.parse_args(argv)

    data = Path(args.data)
    csv_file = data / "face_landmarks.csv"
    if not csv_file.is_file() and args.download:
        try:
            data = download_faces(data.parent)
        except (ValueError, OSError) as e:
            print(f"error: download failed: {e}", file=sys.stderr)
            return 1
        csv_file = data / "face_landmarks.csv"
    if not csv_file.is_file():
        print(f"error: {WHERE_TO_GET.format(path=data)}", file=sys.stderr)
        return 1
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)

    img_name, landmarks = read_landmarks_row(csv_file, 65)
    print(f"Image name: {img_name}\nLandmarks shape: {landmarks.shape}\nFirst 4 landmarks:\n{landmarks[:4]}")

    face_dataset = FaceLandmarksDataset(csv_file=csv_file, root_dir=data)
    firsts = [face_dataset[i] for i in range(4)]
    for i, s in enumerate(firsts):
        print(i, s["image"].shape, s["landmarks"].shape)
    print("saved", save_samples_png([(f"Sample #{i}", s) for i, s in enumerate(firsts)], out / "samples.png"))

    sample = face_dataset[65]
    shown = [(name, tsfrm(sample)) for name, tsfrm in composed_transforms().items()]
    for name, s in shown:
        print(f"{name}: image {s['image'].shape}, landmarks {s['landmarks'].shape}")
    print("saved", save_samples_png(shown, out / "transforms.png"))

    from torchvision import transforms

    transformed_dataset = FaceLandmarksDataset(
        csv_file=csv_file, root_dir=data, transform=transforms.Compose([Rescale(256), RandomCrop(224), ToTensor()])
    )
    dataloader = DataLoader(transformed_dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.num_workers)
    for i_batch, sample_batched in enumerate(dataloader):
        print(i_batch, tuple(sample_batched["image"].size()), tuple(sample_batched["landmarks"].size()))
        if i_batch == 3:  # the notes look at the 4th batch
            print("saved", save_batch_png(sample_batched, out / "batch.png"))
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
