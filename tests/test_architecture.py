"""Package boundaries and ROS packaging metadata."""
from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET

from conftest import REPO


def imported_modules(package: str) -> set[str]:
    names = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def resolved_imports(path) -> set[str]:
    """Every module a file imports, anywhere in it (functions included), relative imports made absolute."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


# lower layer -> the packages above it that it must never import (README: world/ is the procedural data source;
# functional/ evaluates and trains on it; benchmarks/ and cli/ sit on top)
LAYER_RULES = {
    "correspondence/world": ("correspondence.functional", "correspondence.benchmarks", "correspondence.cli"),
    "correspondence/functional": ("correspondence.benchmarks", "correspondence.cli"),
}


def test_lower_layers_never_import_upward():
    """world/ writes datasets the functional evaluator reads: it must not reach up into it (a shared convention,
    such as the reference crop, lives below both: ``correspondence/object_crop.py``)."""
    offenders = []
    for folder, above in LAYER_RULES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            for name in resolved_imports(path):
                if any(name == a or name.startswith(a + ".") for a in above):
                    offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, offenders


def test_core_library_never_imports_ros():
    assert not {"rclpy", "soco_ros", "sensor_msgs", "geometry_msgs"} & imported_modules("correspondence")
    code = "import sys, correspondence, correspondence.cli, correspondence.demo; print('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_package_xml_is_an_ament_python_package():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "soco_ros"
    assert root.find("export/build_type").text == "ament_python"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "visualization_msgs", "std_msgs", "std_srvs"} <= exec_deps
    assert (REPO / "resource" / "soco_ros").is_file()


def test_setup_declares_packages_script_and_extras():
    import importlib.metadata as md
    dist = md.distribution("soco_ros")
    assert any(ep.name == "soco" and ep.value == "correspondence.cli:main" for ep in dist.entry_points)
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    assert {"ros", "gpu", "dev", "all"} <= extras


def test_core_never_imports_the_export_package_and_finds_it_by_entry_point():
    """export/ builds on the core (README: kept apart); the core reaches it only through entry points."""
    from correspondence import plugins
    assert "export" not in imported_modules("correspondence")
    assert plugins.load(plugins.EXPORTER_GROUP, "onnx_backbone").__module__ == "export.onnx_export"
    assert plugins.load(plugins.EXPORTER_GROUP, "tensorrt_verify").__module__ == "export.tensorrt_build"
    assert [m.__name__ for m in plugins.load_all(plugins.CLI_GROUP)] == ["export.cli"]
    assert plugins.load(plugins.EXPORTER_GROUP, "no-such-exporter") is None
