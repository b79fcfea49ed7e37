"""The paper model trained on the real datasets (DESIGN.md 5), read from their release folders.

Usage:
  python -m mcjepa_jax.main --config configs/mcjepa_real.py:root=/datasets,tfds_dir=/datasets/tfds \
      --workdir workdirs/real
`root` must hold FlyingChairs_release/, FlyingThings3D/ (frames_cleanpass, frames_finalpass,
optical_flow), Sintel/ (training/ and test/ frames), KITTI_multiview/ (the multiview extension,
testing/image_2/NNNNNN_00..20.png), HD1K/
(hd1k_input/); `tfds_dir` an `imagenet2012` prepared in array_record format. Missing folders are
reported by name. Repetition factors follow the usual unsupervised-flow mixtures: the small,
realistic sets are repeated so that each epoch sees them about as often as FlyingChairs.
"""

import os

from mcjepa_jax.config_utils import load_module, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, root="/datasets", tfds_dir="")
  paper = load_module(os.path.join(os.path.dirname(__file__), "mcjepa_convnext_t.py"))
  config = paper.get_config()
  data = config.data
  data.name = "real"
  root = arg.root
  data.flow_sets = [
      dict(name="flyingchairs", root=os.path.join(root, "FlyingChairs_release"), split="train", repeat=1),
      dict(name="flyingthings3d", root=os.path.join(root, "FlyingThings3D"), render="clean", repeat=1),
      dict(name="flyingthings3d", root=os.path.join(root, "FlyingThings3D"), render="final", repeat=1),
      dict(name="sintel", root=os.path.join(root, "Sintel"), render="clean", split="test", with_flow=False,
           repeat=10),
      dict(name="sintel", root=os.path.join(root, "Sintel"), render="final", split="test", with_flow=False,
           repeat=10),
      dict(name="kitti", root=os.path.join(root, "KITTI_multiview"), split="testing", multiview=True, repeat=5),
      dict(name="hd1k", root=os.path.join(root, "HD1K"), repeat=5),
  ]
  data.image_set = dict(name="imagenet2012", data_dir=arg.tfds_dir, split="train", root="")
  return config
