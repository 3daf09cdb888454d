"""Launch soco_ros' correspondence_node with camera topics as launch arguments.

    ros2 launch soco_ros correspondence.launch.py \
        image:=/camera/color/image_raw depth:=/camera/aligned_depth_to_color/image_raw \
        camera_info:=/camera/color/camera_info demo_path:=/path/to/demo params_file:=/path/to/soco.yaml

Needs ``launch`` and ``launch_ros`` (a ROS 2 install; they are not part of the pip wheels). Without them, run the
node directly with the same remaps: ``soco-ros-node --ros-args --params-file config/soco.yaml
-r image:=/camera/color/image_raw -r depth:=... -r camera_info:=...`` (docs/ros.md).
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

try:  # the installed share/soco_ros/config/soco.yaml, else the source tree's
    from ament_index_python.packages import get_package_share_directory

    DEFAULT_PARAMS = os.path.join(get_package_share_directory("soco_ros"), "config", "soco.yaml")
except Exception:  # noqa: BLE001 - not installed in a workspace
    DEFAULT_PARAMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "soco.yaml")

ARGUMENTS = {
    # name: (default, description)
    "image": ("/camera/color/image_raw", "Colour image topic (any camera encoding: rgb8, bgr8, bgra8, yuv422, ...)"),
    "depth": ("/camera/aligned_depth_to_color/image_raw", "Depth registered to the image (16UC1 mm or 32FC1 m)"),
    "image_transport": ("", "raw or compressed (reads <image>/compressed); empty: the parameter file's"),
    "depth_transport": ("", "raw or compressedDepth (reads <depth>/compressedDepth); empty: the parameter file's"),
    "camera_info": ("/camera/color/camera_info", "CameraInfo of the image"),
    "mask": ("/camera/mask", "Optional object mask (mono8), used with use_mask:=true"),
    "prompt": ("/camera/prompt", "Optional PointStamped prompt (pixel x, y), used with use_prompt:=true"),
    "params_file": (DEFAULT_PARAMS, "Parameter file (every parameter with its default: config/soco.yaml)"),
    "demo_path": ("", "Demo folder or YAML; overrides the parameter file when not empty"),
    "namespace": ("", "Node namespace"),
    "node_name": ("correspondence_node", "Node name"),
    "lifecycle": ("false", "true: launch as a launch_ros LifecycleNode (with autostart false, drive it yourself)"),
    "log_level": ("info", "Logger level"),
}


def _node(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {name: value[name] for name in ("demo_path", "image_transport", "depth_transport") if value[name]}
    parameters = [value["params_file"]] + ([overrides] if overrides else [])
    common = dict(package="soco_ros", executable="correspondence_node", name=value["node_name"],
                  namespace=value["namespace"], output="screen", parameters=parameters,
                  remappings=[(topic, value[topic]) for topic in ("image", "depth", "camera_info", "mask", "prompt")],
                  arguments=["--ros-args", "--log-level", value["log_level"]])
    if value["lifecycle"].lower() in ("1", "true", "yes"):
        return [LifecycleNode(**common)]
    return [Node(**common)]


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default, description=text)
                              for name, (default, text) in ARGUMENTS.items()] + [OpaqueFunction(function=_node)])
