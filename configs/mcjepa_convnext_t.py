"""MC-JEPA with a ConvNeXt-T encoder: the paper's model and objective (DESIGN.md 2-5).

Usage: --config configs/mcjepa_convnext_t.py[:paper]
Every value marked "our choice" is not given by the paper (see DESIGN.md). The default
trains the flow with our measured choices (issue 12, docs/benchmarks.md: held-out EPE /
zero flow 0.56 instead of 0.78 on the 400-step demo); `:paper` gives DESIGN.md 2-5 exactly.
"""

import ml_collections

from mcjepa_jax.config_utils import parse_arg
from mcjepa_jax.evaluate.defaults import eval_defaults


def get_config(arg=None):
  arg = parse_arg(arg, paper=False)
  config = ml_collections.ConfigDict()
  config.seed = 0

  # ---- model (DESIGN.md 2-3) ----
  config.model = model = ml_collections.ConfigDict()
  # ImageNet statistics; the model normalises [0, 1] inputs with them.
  model.pixel_mean = (0.485, 0.456, 0.406)
  model.pixel_std = (0.229, 0.224, 0.225)
  # Compute dtype of activations, convolutions and matmuls: "float32" or "bfloat16" (mixed precision:
  # parameters, optimizer state, norm statistics, warps, cost volumes, flows and every loss stay
  # float32; models/mcjepa.py). bfloat16 is for GPUs and TPUs; XLA:CPU emulates it slowly.
  model.dtype = "float32"
  # Rematerialisation: "none", or recompute each ConvNeXt/ViT block and each PWC level's estimator
  # (and the context network) in the backward pass, keeping nothing ("full") or the matmul
  # outputs ("dots"); parameters are the same, memory and time in docs/benchmarks.md.
  model.remat = "none"
  model.encoder = dict(
      name="convnext",
      stem_widths=(48, 48),          # levels 1 (H/2) and 2 (H/4)
      stem_kernels=(4, 3),           # DESIGN.md 2; (4, 4) keeps levels 2-6 on the half-pixel grid
      depths=(3, 3, 9, 3),
      widths=(96, 192, 384, 768),    # levels 3..6 (H/8 .. H/64)
      kernel_size=7,
      mlp_ratio=4,
      layer_scale_init=1e-6,
      drop_path_rate=0.1,            # ConvNeXt-T's ImageNet value (our choice)
      norm_eps=1e-6,
      # The 7x7 depthwise convolution: "conv" (grouped convolution), "shifts" (49 shifted
      # multiply-adds with a written-out backward pass) or "auto" (shifts on CPU, the convolution on
      # GPU/TPU). Same values either way. On XLA:CPU the grouped convolution's gradient runs as a dense
      # convolution with a block-diagonal [7, 7, C, C] kernel: "auto" halves the paper step there
      # (8.0 -> 4.1 s with the VICReg Gram form) and takes the demo step from 0.164 to 0.113 s.
      depthwise="auto",
      token_level=4,                 # I-JEPA content objective only: tokens are level-4 (H/16) cells
  )
  model.flow_head = dict(
      levels=(6, 5, 4, 3, 2),
      corr_radius=4,
      estimator_widths=(128, 128, 96, 64, 32),
      context_widths=(128, 128, 128, 96, 64, 32),
      context_dilations=(1, 2, 4, 8, 16, 1),
      negative_slope=0.1,
      flow_clip=128.0,
      layer_norm=True,
      norm_eps=1e-5,
      normalize_features="none",     # before the cost volume: "none" (paper), "pair" (UFlow), "pixel" (cosine)
      feature_widths=(),             # per-level matching convs trained by the flow loss (our choice; paper: none)
      corr_activation=False,         # LeakyReLU on the cost volume (PWC-Net)
      pass_features=False,           # upsampled coarser estimator features into the next level (PWC-Net)
      # Frame-t features into each estimator (PWC-Net, paper). Our choice: cost volume and flow only,
      # so the estimator must match rather than guess flow from appearance (400-step demo: 1.697 vs
      # 1.729 held-out EPE; 1.973 vs 2.005 with image_cost: small but both ways the same).
      source_features=False,
      context_source_features=False,  # frame-t features into the context network (RAFT; an option)
      image_cost=False,              # a second cost volume of fixed normalised image patches (our choice)
      # Flow to the next finer grid: "bilinear" (paper) or "convex" (RAFT's learned 3 x 3 convex
      # combination, its mask read from the finer level's frame-t features; an option).
      upsample="bilinear",
      upsample_width=32,             # hidden width of the convex mask network
      refine_passes=0,               # extra passes of the finest estimator on its own output (IRR; an option)
      # The cost volume's formulation (ops/correlation.py, same values): "slices", "banded" (a matmul
      # per row offset) or "auto" (banded on the CPU for narrow rows of >= 64 channels: 3-6x there).
      corr_impl="auto",
      # The convolutions to 2 flow channels (models/flow_head.py, same values): "conv", "taps" (one
      # matmul to 9 x 2 channels and 9 shifted slices summed) or "auto" (taps on the CPU, where the
      # 531 -> 2 convolution ran at ~10 GFLOP/s: 154 -> 54 ms with its gradients; conv elsewhere).
      predict_impl="auto",
      # The kernel gradient of the estimators' and context network's convolutions (models/flow_head.py,
      # same values): "conv" (XLA's), "matmul_grad" (one matmul against 9 shifted copies of the output
      # gradient) or "auto" (matmul_grad on the CPU for undilated convolutions of >= 1.5x as many inputs
      # as outputs: the paper step at the issue-14 shapes 2.196 -> 1.988 s/step, docs/benchmarks.md).
      conv_impl="auto",
  )
  # Factor on the content loss's gradient leaving each pyramid level (1-6) down the encoder:
  # 1 everywhere is the paper. Our choice: 0 at levels 1-2, so the stem that the finest cost
  # volumes match is trained by the flow loss, not by VICReg (whose gradient there was 16x the
  # photometric one and made matching worse than at initialisation). Only together with the
  # feature terms' train_features=False: alone it lets those terms flatten the stem (EPE 2.68).
  model.content_grad_scales = (0.0, 0.0, 1.0, 1.0, 1.0, 1.0)
  model.expander = dict(widths=(8192, 8192, 8192), bn_momentum=0.9, bn_eps=1e-5)
  # The I-JEPA predictor (loss.content.name = "ijepa"; I-JEPA's ViT-S/B predictors: 384 wide, 6-12 deep).
  model.predictor = dict(width=384, depth=6, num_heads=12, mlp_ratio=4.0, norm_eps=1e-6)

  # ---- objective (DESIGN.md 4) ----
  config.loss = loss = ml_collections.ConfigDict()
  loss.flow_weight = 1.0
  loss.content_weight = 0.1          # flow-vs-content balance (paper Fig. 5)
  # train_features: the encoder also gets the gradient of the feature terms (paper). Our choice:
  # False, they train the flow only; otherwise they lower themselves by flattening the features
  # they compare (400-step demo with the stem left to the flow loss: EPE 2.68 -> 1.73).
  loss.reg = dict(weight=1.0, norm="l1", train_features=False)
  # pyramid_weight > 0 adds the photometric loss at every estimated level on pooled images
  # (losses/flow.py: pyramid_photometric_loss; our choice, used by the CPU demo).
  # normalize: average over the pixels the mask keeps (UFlow/ARFlow) instead of the paper's
  # mean(O * d); exclude_out_of_frame: drop pixels whose flow leaves the frame (our choice).
  loss.rec = dict(weight=1.0, l1=1.0, l2=0.0, ssim=1.0, census=0.0, census_patch=7, pyramid_weight=0.0,
                  normalize=True, exclude_out_of_frame=True)
  # units (losses/flow.py: smoothness_loss): "image" = flow and positions in units of
  # min(H, W), so the weight does not depend on the image size; "pwc" = flow/20 px.
  # Calibrated with benchmarks/free_flow.py so that the true flow stays a minimum of
  # rec + smooth: 0.01 in image units = 0.01 * 64 = 0.64 per pixel of second difference at
  # 64 px (the public reimplementation's active loss: 0.5; ARFlow about 0.8). The 75 on flow/20
  # of DESIGN.md (3.75 per pixel) pulls a free flow started at the truth to a shrunk copy.
  loss.smooth = dict(weight=0.01, order=2, edge_weight=10.0, units="image")
  loss.cycle = dict(weight=0.2, train_features=False)
  loss.occlusion = dict(alpha1=0.01, alpha2=0.5)
  # ARFlow's augmentation self-supervision (losses/selfsup.py; beyond the paper, 0 = off): the
  # stop-gradient flow of each pair supervises the flow of a zoomed crop (window side in
  # [min_scale, 1]) where the teacher's forward-backward check passes, with the robust penalty
  # (|d| + eps)^exponent on pixel flow. It starts and ramps with the occlusion masks.
  # occluders: ARFlow's occlusion transform, that many ellipses (semi-axes occluder_radius x
  # min(H, W)) pasted into the student's frame 2 (0 = off).
  loss.selfsup = dict(weight=0.0, min_scale=0.7, eps=0.01, exponent=0.4, occluders=0, occluder_radius=(0.05, 0.15))
  loss.vc = dict(
      weight=1.0,
      level_weights=((0.01, 0.04), (0.01, 0.04), (0.01, 0.001), (0.01, 0.0), (0.001, 0.0), (0.0001, 0.0)),
      pooled_weights=(0.01, 0.04),
      eps=1e-4,
  )
  loss.vicreg = dict(sim_weight=25.0, std_weight=25.0, cov_weight=1.0, eps=1e-4)
  # The content objective: "vicreg" (the paper) or "ijepa" (the seed's variant: predictor + EMA
  # target encoder, losses/ijepa.py). model.content follows it (the model builds the matching head).
  loss.content = dict(name="vicreg")
  model.content = loss.content.get_ref("name")
  # I-JEPA masks (ops/masks.py; I-JEPA's values): 4 target blocks of scale 0.15-0.2 and aspect
  # 0.75-1.5, one context block of scale 0.85-1 without them, of which context_keep x the tokens
  # are kept (a static count; our choice, I-JEPA keeps the batch's smallest count). The EMA
  # momentum ramps linearly from 0.996 to 1 over training.
  loss.ijepa = dict(num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                    context_scale=(0.85, 1.0), context_keep=0.25, momentum=(0.996, 1.0))

  # ---- training (DESIGN.md 5) ----
  config.train = train = ml_collections.ConfigDict()
  train.image_batch_size = 384
  train.video_batch_size = 8
  steps_per_epoch = 1_281_167 // train.image_batch_size  # ImageNet-1k images per epoch
  train.total_steps = 100 * steps_per_epoch
  train.warmup_steps = 10 * steps_per_epoch
  train.flow_start_steps = 10 * steps_per_epoch
  train.vc_warmup_steps = 1 * steps_per_epoch
  train.occlusion_start_steps = 12 * steps_per_epoch  # 2 epochs after the flow loss (our choice)
  train.occlusion_ramp_steps = 5 * steps_per_epoch    # masks reach full strength linearly (our choice)
  train.encoder_lr = 3e-4            # also the expander's
  train.flow_head_lr = 1e-4
  train.end_lr_fraction = 0.0        # cosine decays to this fraction of the peak lr
  train.weight_decay = 0.05          # encoder and expander: ConvNeXt/VICReg AdamW practice (our choice)
  train.flow_head_weight_decay = 1e-6  # PWC-Net/ARFlow-size decay on the flow head (our choice)
  train.grad_clip_norm = 0.0         # 0 disables clipping
  # N > 0: drop updates whose gradient is NaN/Inf, up to N in a row (optax.apply_if_finite); the
  # count is logged. 0: a non-finite loss or gradient stops the run (train/loop.py).
  train.skip_nonfinite_updates = 0
  train.log_every = 100
  train.picture_every = 5000
  train.checkpoint_every = 5000
  train.keep_checkpoints = 3

  # ---- devices (train/sharding.py) ----
  # data: batch parallel over all devices (-1 = the rest); fsdp > 1 also splits
  # parameters and optimizer state over that many devices.
  config.mesh = dict(data=-1, fsdp=1, fsdp_min_size=2**14)

  # ---- data (DESIGN.md 5) ----
  config.data = data = ml_collections.ConfigDict()
  data.name = "synthetic"            # the embedded generated dataset (real datasets: see README)
  data.source_size = (448, 576)      # generated frames, randomly cropped to pairs.crop
  data.num_train = 1_000_000
  data.num_eval = 64
  data.num_threads = 8
  # data.name = "real" (configs/mcjepa_real.py): flow pairs from a mixture of release folders,
  # dict(name=flyingchairs|flyingthings3d|sintel|kitti|hd1k|frames, root=..., repeat=N, ...),
  # and content images from a TFDS directory (name="imagenet2012", data_dir=...) or a folder.
  data.flow_sets = []
  data.image_set = dict(name="", data_dir="", split="train", root="")
  # crop: multiples of 64. full_image_margin m > 0: SMURF's full-image warping, the photometric
  # loss samples the target frame from the crop plus m pixels each side (the image where it
  # exists), so pixels that move out of the crop are still compared (0 = off, the paper).
  data.pairs = dict(crop=(384, 512), jitter=(0.3, 0.3, 0.2, 0.05), jitter_prob=0.8, full_image_margin=0)
  data.views = dict(size=224, crop_scale=(0.08, 1.0), flip_prob=0.5, jitter=(0.4, 0.4, 0.2, 0.1),
                    jitter_prob=0.8, grey_prob=0.2, blur_probs=(1.0, 0.1), solarize_probs=(0.0, 0.2),
                    blur_sigma=(0.1, 2.0))

  # ---- evaluation (DESIGN.md 6) ----
  config.eval = eval_defaults()  # mcjepa_jax/evaluate/defaults.py: DAVIS and linear-probe protocols
  if arg.paper:
    use_paper_objective(config)
  return config


def use_paper_objective(config):
  """DESIGN.md 3-4 to the letter, in place of our choices for the flow branch.

  The paper trains every pyramid level with every term: the feature terms (reg,
  cycle) and VICReg reach all levels, the estimators read the frame-t features,
  losses are averaged over all pixels, smoothness is 75 on flow/20, occlusion
  masks switch on at once and the flow head decays like the encoder.
  """
  loss = config.loss
  loss.rec.normalize = False
  loss.rec.exclude_out_of_frame = False
  loss.smooth.weight, loss.smooth.units = 75.0, "pwc"
  loss.reg.train_features = True
  loss.cycle.train_features = True
  config.model.content_grad_scales = (1.0,) * 6
  config.model.flow_head.source_features = True
  config.train.occlusion_ramp_steps = 1
  config.train.flow_head_weight_decay = config.train.weight_decay
