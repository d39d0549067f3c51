"""Lesson 6: the face-landmarks Dataset, Rescale / RandomCrop / ToTensor, DataLoader, the faces.zip download."""

import hashlib
import http.server
import io
import threading
import zipfile
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from skimage import io as skio
from torch.utils.data import DataLoader
from torchvision import transforms

from foundations import landmarks as lm


def marker_image(h: int, w: int, points: np.ndarray, radius: int = 3, base: np.ndarray | None = None) -> np.ndarray:
    """(h, w, C+1) float image whose last channel is 1 in a square around every landmark (x, y)."""
    marker = np.zeros((h, w), dtype=float)
    for x, y in np.rint(points).astype(int):
        marker[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1] = 1.0
    base = np.zeros((h, w, 3)) if base is None else base.astype(float) / 255.0
    return np.dstack([base, marker])


def assert_aligned(sample: dict, threshold: float = 0.2) -> int:
    """Every in-frame landmark sits on the marker channel; returns how many were checked."""
    image, points = np.asarray(sample["image"]), np.asarray(sample["landmarks"])
    if image.shape[0] == 4:  # (C, H, W) after ToTensor
        image = image.transpose(1, 2, 0)
    assert points.shape == (68, 2)
    h, w = image.shape[:2]
    checked = 0
    for x, y in np.rint(points).astype(int):
        if 0 <= x < w and 0 <= y < h:
            assert image[y, x, -1] > threshold, f"landmark ({x}, {y}) is off its marker"
            checked += 1
    return checked


def random_points(h: int, w: int, seed: int = 0, margin: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(margin, w - margin, 68), rng.uniform(margin, h - margin, 68)])  # (68, 2)


def test_rescale_int_makes_the_smaller_edge_that_size_and_scales_landmarks():
    points = random_points(300, 400)
    out = lm.Rescale(256)({"image": np.zeros((300, 400, 3)), "landmarks": points})
    assert out["image"].shape == (256, 341, 3)
    np.testing.assert_allclose(out["landmarks"], points * [341 / 400, 256 / 300])


def test_rescale_portrait_keeps_aspect_which_the_notes_broke():
    out = lm.Rescale(256)({"image": np.zeros((400, 300, 3)), "landmarks": random_points(400, 300)})
    assert out["image"].shape == (341, 256, 3)  # the notes' branch gave (341, 192)


def test_rescale_tuple_is_height_width():
    out = lm.Rescale((100, 50))({"image": np.zeros((300, 400, 3)), "landmarks": random_points(300, 400)})
    assert out["image"].shape == (100, 50, 3)


def test_rescale_keeps_landmarks_on_their_pixels():
    points = random_points(300, 400, seed=1)
    sample = {"image": marker_image(300, 400, points, radius=4), "landmarks": points}
    assert assert_aligned(lm.Rescale(256)(sample)) == 68
    assert assert_aligned(lm.Rescale((150, 500))(sample)) == 68


def test_random_crops_keep_landmarks_on_their_pixels():
    points = random_points(120, 150, seed=2)
    sample = {"image": marker_image(120, 150, points, radius=0), "landmarks": points}
    crop = lm.RandomCrop((64, 80), rng=np.random.default_rng(0))
    total = 0
    for _ in range(20):
        out = crop(sample)
        assert out["image"].shape == (64, 80, 4)
        total += assert_aligned(out, threshold=0.99)
    assert total > 100  # many landmarks were really inside the crops


def test_random_crop_reaches_every_offset_including_the_exact_size():
    points = random_points(40, 50)
    sample = {"image": np.arange(40 * 50 * 3).reshape(40, 50, 3), "landmarks": points}
    same = lm.RandomCrop((40, 50))(sample)  # the notes' randint(0, 0) raised here
    np.testing.assert_array_equal(same["image"], sample["image"])
    np.testing.assert_array_equal(same["landmarks"], points)
    crop = lm.RandomCrop((39, 50), rng=np.random.default_rng(0))
    tops = {int(crop(sample)["image"][0, 0, 0]) // (50 * 3) for _ in range(50)}
    assert tops == {0, 1}  # the last offset (h - new_h) is reachable
    with pytest.raises(ValueError):
        lm.RandomCrop(41)(sample)


def test_to_tensor_moves_channels_first():
    out = lm.ToTensor()({"image": np.zeros((20, 30, 3)), "landmarks": random_points(20, 30, margin=2)})
    assert out["image"].shape == (3, 20, 30) and out["landmarks"].shape == (68, 2)
    assert torch.is_tensor(out["image"]) and torch.is_tensor(out["landmarks"])


@pytest.fixture(scope="module")
def fake_faces(tmp_path_factory):
    """A faces folder made here: 3 images (160-200 px), 70 CSV rows pointing at them, landmarks inside."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    shapes = {"a.png": (160, 200), "b.png": (200, 170), "c.png": (180, 180)}
    rows = []
    for name, (h, w) in shapes.items():
        skio.imsave(root / name, (rng.uniform(0, 255, (h, w, 3))).astype(np.uint8), check_contrast=False)
    for i in range(70):
        name = list(shapes)[i % 3]
        h, w = shapes[name]
        rows.append([name, *random_points(h, w, seed=i).round().ravel()])
    columns = ["image_name"] + [f"part_{k}_{a}" for k in range(68) for a in "xy"]
    pd.DataFrame(rows, columns=columns).to_csv(root / "face_landmarks.csv", index=False)
    return root


def test_dataset_reads_each_rows_landmarks_lazily(fake_faces):
    ds = lm.FaceLandmarksDataset(fake_faces / "face_landmarks.csv", fake_faces)
    assert len(ds) == 70
    frame = pd.read_csv(fake_faces / "face_landmarks.csv")
    for idx in (0, 4, 65):
        sample = ds[idx]
        assert sample["image"].shape == skio.imread(fake_faces / frame.iloc[idx, 0]).shape
        np.testing.assert_array_equal(sample["landmarks"], frame.iloc[idx, 1:].to_numpy(float).reshape(68, 2))
    name, points = lm.read_landmarks_row(fake_faces / "face_landmarks.csv", 65)
    assert name == frame.iloc[65, 0] and points.shape == (68, 2)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_yields_correctly_shaped_batches(fake_faces, num_workers):
    composed = transforms.Compose([lm.Rescale(64), lm.RandomCrop(48), lm.ToTensor()])
    ds = lm.FaceLandmarksDataset(fake_faces / "face_landmarks.csv", fake_faces, transform=composed)
    sizes = []
    for batch in DataLoader(ds, batch_size=4, shuffle=True, num_workers=num_workers):
        assert batch["image"].shape[1:] == (3, 48, 48) and batch["image"].dtype == torch.float64
        assert batch["landmarks"].shape[1:] == (68, 2)
        sizes.append(len(batch["image"]))
    assert sizes == [4] * 17 + [2]


def test_cli_runs_the_lesson_and_saves_pngs(fake_faces, tmp_path, capsys):
    out = tmp_path / "plots"
    args = ["--data", str(fake_faces), "--out", str(out), "--num-workers", "0"]
    assert lm.main(args) == 0
    printed = capsys.readouterr().out
    assert "Landmarks shape: (68, 2)" in printed and "(4, 3, 224, 224) (4, 68, 2)" in printed
    for name in ("samples.png", "transforms.png", "batch.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_cli_says_where_to_get_missing_data(tmp_path, capsys):
    assert lm.main(["--data", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--download" in err and lm.FACES_URL in err


# --- the faces.zip download, against a server on 127.0.0.1 that this test starts ----------------------


def faces_zip(csv_text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("faces/face_landmarks.csv", csv_text)
        zf.writestr("faces/a.jpg", b"not really a jpeg")
    return buf.getvalue()


@pytest.fixture
def zip_server(tmp_path):
    """Serve tmp_path/www over HTTP on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_faces_checks_hashes(zip_server, tmp_path):
    www, base = zip_server
    csv_text = "image_name,part_0_x\na.jpg,1\n"
    payload = faces_zip(csv_text)
    (www / "faces.zip").write_bytes(payload)
    good_zip = "sha256:" + hashlib.sha256(payload).hexdigest()
    good_csv = hashlib.sha256(csv_text.encode()).hexdigest()

    with pytest.raises(ValueError):  # wrong archive hash: pooch refuses and keeps nothing
        lm.download_faces(tmp_path / "bad", url=f"{base}/faces.zip", known_hash="sha256:" + "0" * 64, csv_sha256=None)
    assert not (tmp_path / "bad" / "faces").exists() and not (tmp_path / "bad" / "faces.zip").exists()

    with pytest.raises(ValueError):  # right archive, wrong CSV inside (the default check on the real file)
        lm.download_faces(tmp_path / "badcsv", url=f"{base}/faces.zip", known_hash=good_zip)
    assert not (tmp_path / "badcsv" / "faces").exists()

    folder = lm.download_faces(tmp_path / "good", url=f"{base}/faces.zip", known_hash=good_zip, csv_sha256=good_csv)
    assert folder == tmp_path / "good" / "faces"
    assert (folder / "face_landmarks.csv").read_text() == csv_text and (folder / "a.jpg").is_file()


# --- the real faces ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_faces_load_and_every_transform_keeps_landmarks_aligned(shared_data):
    faces = shared_data / "faces"
    ds = lm.FaceLandmarksDataset(faces / "face_landmarks.csv", faces)
    assert len(ds) == 69
    composed = lm.composed_transforms()
    pipelines = {
        **composed,
        "Compose+ToTensor": transforms.Compose([lm.Rescale(256), lm.RandomCrop(224), lm.ToTensor()]),
    }
    np.random.seed(0)
    checked = 0
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["image"].ndim == 3 and sample["image"].shape[2] == 3 and sample["landmarks"].shape == (68, 2)
        h, w = sample["image"].shape[:2]
        marked = {
            "image": marker_image(h, w, sample["landmarks"], base=sample["image"]),
            "landmarks": sample["landmarks"],
        }
        assert assert_aligned(marked) > 0
        for name, tsfrm in pipelines.items():
            out = tsfrm(marked)
            checked += assert_aligned({k: np.asarray(v) for k, v in out.items()})
            if name == "Compose+ToTensor":
                assert out["image"].shape == (4, 224, 224)
    assert checked > 69 * 68 * 2  # most landmarks stay inside the frames
