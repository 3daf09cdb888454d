"""Build the ``tf2_msgs`` interface package (``tf2_msgs/msg/TFMessage``) into this Python environment.

The ROS 2 Jazzy pip wheels have rclpy, the message packages the node uses and the rosidl generators, but not
tf2 (``tf2_ros``, ``tf2_msgs``). With a ROS install the node broadcasts its alignment with
``tf2_ros.TransformBroadcaster``; without one it publishes ``tf2_msgs/msg/TFMessage`` on ``/tf`` itself, which
needs the message type. This script generates it from the upstream definition with the installed generators,
exactly as ``rosidl_generate_interfaces`` would (``.msg`` -> ``.idl`` -> type hash -> C structs, the Fast DDS
and introspection C type supports, the C type-support dispatch, the Python module and its C extension), and
compiles it with the system C/C++ compiler against the wheels' headers and libraries. No CMake, no network.

    python -m soco_ros.tf2_msgs_build            # build and install (idempotent; --force rebuilds)
    python -m soco_ros.tf2_msgs_build --check    # exit 0 if ``from tf2_msgs.msg import TFMessage`` works

Installs into the environment's prefix like the wheels do: the Python package into site-packages, the
``lib<pkg>__*.so`` libraries into ``<prefix>/lib`` (on ``LD_LIBRARY_PATH`` through ``ros_wheels_bootstrapper``),
the definitions into ``<prefix>/share/tf2_msgs`` and an ament index entry. The message definition below is the
upstream one (ros2/geometry2, ``tf2_msgs/msg/TFMessage.msg``), so the type name and the RIHS01 type hash equal
those of a ROS install and real tf2 listeners receive the messages.

It refuses (exit 1, with the reason) rather than half-installs: everything is built in a temporary folder and
copied only when every step succeeded. ``make setup`` runs it and carries on with a warning when it fails.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

PACKAGE = "tf2_msgs"
# Upstream definitions (ros2/geometry2, jazzy): only TFMessage is needed to publish on /tf.
MESSAGES = {"TFMessage": "geometry_msgs/TransformStamped[] transforms\n"}
DEPENDENCIES = ("geometry_msgs", "std_msgs", "builtin_interfaces")
TYPESUPPORTS_C = ("rosidl_typesupport_fastrtps_c", "rosidl_typesupport_introspection_c")
MARKER = "_soco_built.json"


class BuildError(RuntimeError):
    pass


def prefix() -> Path:
    return Path(sys.prefix)


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def available() -> bool:
    """True when ``tf2_msgs.msg.TFMessage`` imports with its type support (from a ROS install or this build)."""
    try:
        from tf2_msgs.msg import TFMessage

        TFMessage.__class__.__import_type_support__()
        return TFMessage._TYPE_SUPPORT is not None
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}")


def _configure(template: Path, out: Path) -> None:
    """CMake's ``configure_file`` for the visibility headers (@PROJECT_NAME@, @PROJECT_NAME_UPPER@)."""
    text = template.read_text(encoding="utf-8")
    text = text.replace("@PROJECT_NAME_UPPER@", PACKAGE.upper()).replace("@PROJECT_NAME@", PACKAGE)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


def _args_file(work: Path, generator: str, out_dir: Path, idl_dir: Path, descriptions: Path | None) -> Path:
    share = prefix() / "share"
    idl_tuples = [f"{idl_dir}:msg/{name}.idl" for name in MESSAGES]
    deps = []
    for dep in DEPENDENCIES:
        deps += [f"{dep}:{p}" for p in sorted((share / dep / "msg").glob("*.idl"))]
    args = {
        "package_name": PACKAGE,
        "output_dir": str(out_dir),
        "template_dir": str(share / generator / "resource"),
        "idl_tuples": idl_tuples,
        "ros_interface_dependencies": deps,
        "ros_interface_files": [str(idl_dir / "msg" / f"{name}.msg") for name in MESSAGES],
        "target_dependencies": [],
        "include_paths": [f"{dep}:{share / dep}" for dep in DEPENDENCIES],
    }
    if descriptions is not None:
        args["type_description_tuples"] = [f"msg/{name}.idl:{descriptions / 'msg' / (name + '.json')}"
                                           for name in MESSAGES]
    path = work / f"{generator}.args.json"
    path.write_text(json.dumps(args, indent=1), encoding="utf-8")
    return path


def build(work: Path) -> dict[str, list[Path]]:
    """Generate and compile into ``work``; returns what to install: {"lib": [...], "python": [...], "share": [...]}."""
    from rosidl_adapter.msg import convert_msg_to_idl
    from rosidl_generator_c import generate_c
    from rosidl_generator_py.generate_py_impl import generate_py
    from rosidl_generator_type_description import generate_type_hash
    from rosidl_typesupport_c import generate_c as generate_typesupport_c
    from rosidl_typesupport_fastrtps_c import generate_typesupport_fastrtps_c
    from rosidl_typesupport_introspection_c import generate_c as generate_introspection_c

    for tool in ("cc", "c++"):
        if shutil.which(tool) is None:
            raise BuildError(f"no {tool!r} compiler on PATH (apt-get install build-essential)")
    share, include, lib = prefix() / "share", prefix() / "include", prefix() / "lib"
    for dep in DEPENDENCIES + ("rosidl_runtime_c", "rosidl_typesupport_c", "rosidl_typesupport_fastrtps_c",
                               "rosidl_typesupport_introspection_c", "fastcdr"):
        if not (include / dep).is_dir():
            raise BuildError(f"missing headers {include / dep} (the ROS 2 wheels are not installed?)")

    idl_dir = work / "idl"
    (idl_dir / "msg").mkdir(parents=True)
    for name, text in MESSAGES.items():
        (idl_dir / "msg" / f"{name}.msg").write_text(text, encoding="utf-8")
        convert_msg_to_idl(idl_dir, PACKAGE, Path("msg") / f"{name}.msg", idl_dir / "msg")

    descriptions = work / "type_description"
    generate_type_hash(_args_file(work, "rosidl_generator_type_description", descriptions, idl_dir, None))
    gen = work / "gen"
    c_out, ts_out = gen / "c" / PACKAGE, gen / "typesupport_c" / PACKAGE
    fast_out, intro_out = gen / "fastrtps_c" / PACKAGE, gen / "introspection_c" / PACKAGE
    py_out = gen / "py" / PACKAGE
    generate_c(str(_args_file(work, "rosidl_generator_c", c_out, idl_dir, descriptions)))
    generate_introspection_c(str(_args_file(work, "rosidl_typesupport_introspection_c", intro_out, idl_dir,
                                            descriptions)))
    generate_typesupport_fastrtps_c(str(_args_file(work, "rosidl_typesupport_fastrtps_c", fast_out, idl_dir,
                                                   descriptions)))
    generate_typesupport_c(str(_args_file(work, "rosidl_typesupport_c", ts_out, idl_dir, descriptions)),
                           list(TYPESUPPORTS_C))
    generate_py(str(_args_file(work, "rosidl_generator_py", py_out, idl_dir, descriptions)),
                ["rosidl_typesupport_c"])
    _configure(share / "rosidl_generator_c" / "resource" / "rosidl_generator_c__visibility_control.h.in",
               c_out / "msg" / "rosidl_generator_c__visibility_control.h")
    _configure(share / "rosidl_typesupport_introspection_c" / "resource"
               / "rosidl_typesupport_introspection_c__visibility_control.h.in",
               intro_out / "msg" / "rosidl_typesupport_introspection_c__visibility_control.h")
    _configure(share / "rosidl_typesupport_fastrtps_c" / "resource"
               / "rosidl_typesupport_fastrtps_c__visibility_control.h.in",
               fast_out / "msg" / "rosidl_typesupport_fastrtps_c__visibility_control.h")

    out = work / "out"
    (out / "lib").mkdir(parents=True)
    py_include = sysconfig.get_paths()["include"]
    import numpy

    incs = [f"-I{gen / d}" for d in ("c", "typesupport_c", "fastrtps_c", "introspection_c", "py")]
    # ament packages install headers to include/<pkg>/<pkg>/...; fastcdr keeps the flat include/fastcdr/... layout
    incs += [f"-I{include / d}" for d in sorted(os.listdir(include)) if (include / d).is_dir()] + [f"-I{include}"]
    incs += [f"-I{py_include}", f"-I{numpy.get_include()}"]
    common = ["-shared", "-fPIC", "-O2", "-w", *incs, f"-L{out / 'lib'}", f"-L{lib}",
              "-Wl,-rpath,$ORIGIN", f"-Wl,-rpath,{lib}"]

    def so(name: str) -> Path:
        return out / "lib" / f"lib{PACKAGE}__{name}.so"

    dep_libs = lambda suffix: [f"-l{dep}__{suffix}" for dep in DEPENDENCIES]  # noqa: E731
    c_sources = sorted(str(p) for p in c_out.rglob("*.c"))
    _run(["cc", *common, "-std=c11", "-o", str(so("rosidl_generator_c")), *c_sources,
          *dep_libs("rosidl_generator_c"), "-lrosidl_runtime_c", "-lrcutils"], work)
    _run(["cc", *common, "-std=c11", "-o", str(so("rosidl_typesupport_introspection_c")),
          *sorted(str(p) for p in intro_out.rglob("*.c")), f"-l{PACKAGE}__rosidl_generator_c",
          *dep_libs("rosidl_typesupport_introspection_c"), "-lrosidl_typesupport_introspection_c",
          "-lrosidl_runtime_c", "-lrcutils"], work)
    _run(["c++", *common, "-std=c++17", "-o", str(so("rosidl_typesupport_fastrtps_c")),
          *sorted(str(p) for p in fast_out.rglob("*.cpp")), f"-l{PACKAGE}__rosidl_generator_c",
          *dep_libs("rosidl_typesupport_fastrtps_c"), *dep_libs("rosidl_generator_c"),
          "-lrosidl_typesupport_fastrtps_c", "-lrosidl_runtime_c", "-lfastcdr", "-lrcutils"], work)
    _run(["c++", *common, "-std=c++17", "-o", str(so("rosidl_typesupport_c")),
          *sorted(str(p) for p in ts_out.rglob("*.cpp")), f"-l{PACKAGE}__rosidl_generator_c",
          "-lrosidl_typesupport_c", "-lrosidl_runtime_c", "-lrcpputils", "-lrcutils"], work)
    _run(["cc", *common, "-std=c11", "-o", str(so("rosidl_generator_py")),
          *sorted(str(p) for p in py_out.rglob("*_s.c")), f"-l{PACKAGE}__rosidl_generator_c",
          f"-l{PACKAGE}__rosidl_typesupport_c", *dep_libs("rosidl_generator_py"), *dep_libs("rosidl_generator_c"),
          "-lrosidl_runtime_c", "-lrcutils"], work)
    pkg = out / "python" / PACKAGE
    shutil.copytree(py_out, pkg, ignore=shutil.ignore_patterns("*.c"))
    (pkg / "__init__.py").touch()
    _run(["cc", *common, "-std=c11", "-o", str(pkg / f"{PACKAGE}_s__rosidl_typesupport_c.so"),
          str(py_out / f"_{PACKAGE}_s.ep.rosidl_typesupport_c.c"), f"-l{PACKAGE}__rosidl_generator_py",
          f"-l{PACKAGE}__rosidl_generator_c", f"-l{PACKAGE}__rosidl_typesupport_c", "-lrosidl_runtime_c",
          "-lrcutils"], work)
    (pkg / MARKER).write_text(json.dumps({"built_by": "soco_ros.tf2_msgs_build", "messages": sorted(MESSAGES)}),
                              encoding="utf-8")
    share_out = out / "share" / PACKAGE / "msg"
    share_out.mkdir(parents=True)
    for name in MESSAGES:
        for path in (idl_dir / "msg" / f"{name}.msg", idl_dir / "msg" / f"{name}.idl",
                     descriptions / "msg" / f"{name}.json"):
            shutil.copy2(path, share_out / path.name)
    return {"lib": sorted((out / "lib").glob("*.so")), "python": [pkg], "share": [out / "share" / PACKAGE]}


def install(built: dict[str, list[Path]]) -> list[Path]:
    """Copy the build into the prefix; returns every path it wrote (for :func:`uninstall`)."""
    lib, share = prefix() / "lib", prefix() / "share"
    written: list[Path] = []
    for path in built["lib"]:
        shutil.copy2(path, lib / path.name)
        written.append(lib / path.name)
    for folder, paths in ((site_packages(), built["python"]), (share, built["share"])):
        for path in paths:
            target = folder / path.name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(path, target)
            written.append(target)
    index = share / "ament_index" / "resource_index"
    for kind, text in (("packages", ""), ("rosidl_interfaces", "".join(f"msg/{n}.idl\nmsg/{n}.msg\n"
                                                                          for n in MESSAGES))):
        (index / kind).mkdir(parents=True, exist_ok=True)
        (index / kind / PACKAGE).write_text(text, encoding="utf-8")
        written.append(index / kind / PACKAGE)
    return written


def uninstall(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _check_in_subprocess() -> tuple[bool, str]:
    """Import and serialise a TFMessage in a fresh interpreter (new libraries are only seen by a new process)."""
    code = ("from tf2_msgs.msg import TFMessage\nfrom geometry_msgs.msg import TransformStamped\n"
            "from rclpy.serialization import serialize_message, deserialize_message\n"
            "m = TFMessage(transforms=[TransformStamped(child_frame_id='x')])\n"
            "assert deserialize_message(serialize_message(m), TFMessage).transforms[0].child_frame_id == 'x'\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode == 0 and "ok" in proc.stdout, proc.stdout[-2000:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that tf2_msgs is importable")
    parser.add_argument("--force", action="store_true", help="rebuild even when tf2_msgs already works")
    parser.add_argument("--keep", action="store_true", help="keep the build folder (printed)")
    parser.add_argument("--quiet", action="store_true", help="print only the outcome")
    args = parser.parse_args(argv)
    ok, out = _check_in_subprocess()
    if args.check:
        print("tf2_msgs: available" if ok else f"tf2_msgs: not available\n{out}")
        return 0 if ok else 1
    if ok and not args.force:
        print("[tf2_msgs] already available")
        return 0
    work = Path(tempfile.mkdtemp(prefix="soco_tf2_msgs_"))
    try:
        if args.quiet:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                built = build(work)
        else:
            built = build(work)
        written = install(built)
        ok, out = _check_in_subprocess()
        if not ok:
            uninstall(written)
            raise BuildError(f"built, but the import check failed (removed again):\n{out}")
        print(f"[tf2_msgs] built and installed into {prefix()}")
        return 0
    except Exception as exc:  # noqa: BLE001 - report any failure as one line + detail, never a half state
        print(f"[tf2_msgs] build failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"[tf2_msgs] build folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
