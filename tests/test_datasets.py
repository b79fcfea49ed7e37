"""Dataset sources in the releases' layouts: the format fixtures (layout only, empty files) and the real samples."""

import numpy as np
import pytest

from mcjepa_jax.data import datasets
from mcjepa_jax.data.formats import DataFormatError


@pytest.fixture(scope="module")
def fixtures(shared_data):
  return shared_data / "format_fixtures"


@pytest.mark.parametrize("make, count, first", [
    (lambda r: datasets.FlyingChairs(r / "pseudo_flyingchairs"), 4, "data/00001_img1.ppm"),
    (lambda r: datasets.FlyingChairs(r / "pseudo_flyingchairs", "val"), 1, "data/00002_img1.ppm"),
    (lambda r: datasets.FlyingChairs(r / "pseudo_flyingchairs", "all"), 5, "data/00001_img1.ppm"),
    (lambda r: datasets.FlyingThings3D(r / "pseudo_flyingthings3d"), 1,
     "frames_cleanpass/TRAIN/A/0000/left/0006.png"),
    (lambda r: datasets.FlyingThings3D(r / "pseudo_flyingthings3d", "final", "TEST", "into_past", "right"), 1,
     "frames_finalpass/TEST/A/0000/right/0007.png"),
    (lambda r: datasets.Sintel(r / "pseudo_sintel", "final"), 4, "training/final/alley_2/frame_0001.png"),
    (lambda r: datasets.KITTI(r / "pseudo_kitti"), 1, "training/image_2/000000_10.png"),
    (lambda r: datasets.KITTI(r / "pseudo_kitti", version=2012, flow="noc"), 1, "training/colored_0/000000_10.png"),
    (lambda r: datasets.HD1K(r / "pseudo_hd1k"), 1, "hd1k_input/image_2/000000_0010.png"),
])
def test_layouts_are_listed_from_the_release_folders(fixtures, make, count, first):
  source = make(fixtures)
  assert len(source) == count
  assert str(source.pairs[0][0]).endswith(first)
  # The fixtures are empty files: reading one must name it.
  with pytest.raises(DataFormatError, match="empty"):
    source[0]


def test_flyingthings_past_pairs_point_backwards_with_past_flow(fixtures):
  source = datasets.FlyingThings3D(fixtures / "pseudo_flyingthings3d", direction="into_past")
  frame1, frame2, flow = source.pairs[0]
  assert frame1.endswith("0007.png") and frame2.endswith("0006.png")
  assert flow.endswith("into_past/left/OpticalFlowIntoPast_0007_L.pfm")


def test_missing_folders_and_unknown_names_are_clear(tmp_path):
  with pytest.raises(DataFormatError, match="nowhere"):
    datasets.Sintel(str(tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="unknown dataset 'chairz'"):
    datasets.make_flow_source({"name": "chairz", "root": str(tmp_path)})


def test_real_samples_decode_with_ground_truth(shared_data):
  sintel = datasets.Sintel(str(shared_data / "Sintel"), "clean")
  sample = sintel[0]
  assert sample["frame1"].shape == (436, 1024, 3) and sample["flow"].shape == (436, 1024, 2)
  occluded, invalid = sintel.masks(0)
  assert occluded.shape == (436, 1024) and 0 < occluded.mean() < 0.5
  chairs = datasets.FlyingChairs(str(shared_data / "FlyingChairs_release"), "all")
  assert len(chairs) == 9 and chairs[3]["flow"].shape == (384, 512, 2)
  raw = datasets.Sintel(str(shared_data / "Sintel"), "final", with_flow=False)
  assert len(raw) == 3 and set(raw[2]) == {"frame1", "frame2"}


def test_unlabeled_video_frames_and_mixture(shared_data):
  davis = datasets.FramePairs(str(shared_data / "DAVIS" / "JPEGImages" / "480p"))
  video = datasets.FramePairs(str(shared_data / "video" / "tree.avi"))
  assert len(video) == 67 and video[10]["frame1"].shape == (240, 320, 3)
  assert not np.array_equal(video[10]["frame1"], video[10]["frame2"])
  np.testing.assert_array_equal(video[10]["frame2"], video[11]["frame1"])
  mixture = datasets.make_flow_mixture([
      {"name": "frames", "root": str(shared_data / "video" / "tree.avi"), "repeat": 2},
      {"name": "flyingchairs", "root": str(shared_data / "FlyingChairs_release"), "split": "all", "repeat": 3}])
  assert len(mixture) == 2 * 67 + 3 * 9
  np.testing.assert_array_equal(mixture[67 + 5]["frame1"], video[5]["frame1"])
  np.testing.assert_array_equal(mixture[2 * 67 + 9 + 2]["frame1"], mixture[2 * 67 + 2]["frame1"])
  assert len(davis) > 100


def test_kitti_multiview_pairs_stay_inside_their_scene(tmp_path):
  folder = tmp_path / "testing" / "image_2"
  folder.mkdir(parents=True)
  for scene in ("000000", "000001"):
    for frame in range(21):
      (folder / f"{scene}_{frame:02d}.png").write_bytes(b"")
  source = datasets.KITTI(str(tmp_path), split="testing", multiview=True)
  assert len(source) == 2 * 20
  assert all(a.split("_")[-2] == b.split("_")[-2] for a, b, _ in source.pairs)
  assert source.pairs[0][0].endswith("000000_00.png") and source.pairs[0][1].endswith("000000_01.png")


def test_video_pairs_stream_the_same_frames_as_a_full_decode(shared_data):
  """Frames decoded on access from the nearest keyframe equal those of decoding the whole video,
  and the source keeps only timestamps (memory independent of the video's length)."""
  path = str(shared_data / "video" / "tree.avi")
  everything = datasets.read_video(path)
  source = datasets.FramePairs(path, stride=2)
  assert len(source) == len(everything) - 2
  for index in (0, 1, 17, 40, len(source) - 1):
    sample = source[index]
    np.testing.assert_array_equal(sample["frame1"], everything[index])
    np.testing.assert_array_equal(sample["frame2"], everything[index + 2])
  stored = sum(np.asarray(v).nbytes for v in source._timestamps.values())  # pylint: disable=protected-access
  assert stored < 1000 < everything.nbytes


def test_missing_files_and_a_mismatched_split_file_stop_at_build_time(fixtures, tmp_path):
  import shutil
  root = tmp_path / "chairs"
  shutil.copytree(fixtures / "pseudo_flyingchairs", root)
  (root / "data" / "00003_img2.ppm").unlink()
  with pytest.raises(DataFormatError, match=r"1 file\(s\) of the 5 FlyingChairs samples are missing, first "
                                            r".*00003_img2.ppm. Expected layout: FlyingChairs_release: data/"):
    datasets.FlyingChairs(str(root), "all")
  shutil.copy(fixtures / "pseudo_flyingchairs" / "data" / "00003_img2.ppm", root / "data")
  (root / "FlyingChairs_train_val.txt").write_text("1\n1\n2\n")
  with pytest.raises(DataFormatError, match=r"FlyingChairs_train_val.txt: 3 lines for the 5 samples"):
    datasets.FlyingChairs(str(root), "train")
