"""mcjepa_jax: MC-JEPA (motion and content self-supervised learning) in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="mcjepa_jax",
    version="0.1.0",
    description="JAX/Flax implementation of MC-JEPA: self-supervised motion (optical flow) and content features",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mcjepa_jax", "mcjepa_jax.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.10.2,<0.12",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "ml_collections>=1.1,<2",
        # Local or bucket (gs://) workdirs for checkpoints, pictures and eval.json.
        "etils[epath]>=1.7,<2",
        "tensorflow-datasets>=4.9.10,<5",
        "grain>=0.2.18,<0.3",
        "clu==0.0.12",
        # clu's metric writers and periodic actions import TensorFlow.
        "tensorflow-cpu>=2.21,<2.22",
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26,<3",
        "pillow>=10,<14",
        "scikit-image>=0.24,<0.27",
        "matplotlib>=3.8,<4",
        # Video files as unlabeled training pairs (PyAV bundles FFmpeg).
        "av>=14,<19",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            # The suite on both cores of the CI machine (scripts/test.sh: -n 2 --dist loadfile).
            "pytest-xdist>=3.5,<4",
            "chex>=0.1.90,<0.2",
            # The exact CPU build that installs from a local file here; other versions download GBs.
            "torch==2.13.0",
            # Property-based fuzzing of the file readers.
            "hypothesis>=6.100,<7",
            # Executing notebooks/mcjepa_colab.ipynb in CI.
            "nbclient>=0.10,<0.12",
            "nbformat>=5.10,<6",
            "ipykernel>=6.29,<8",
        ],
    },
)
