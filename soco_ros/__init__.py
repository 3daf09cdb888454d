"""soco_ros: the thin ROS 2 wrapper around :mod:`correspondence`.

Only this package imports rclpy. The correspondence node (subscriptions, parameters, publishers) lands with the
ROS 2 node issue; the library it wraps is complete without ROS.
"""
