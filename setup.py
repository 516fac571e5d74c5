"""Packaging: the repo's top-level folders become subpackages of one import package, `fogline`.

`gateway/` -> fogline.gateway, `tools/` -> fogline.tools, `shared/` -> fogline.shared, and `firmware/` and
`boards/` ship as fogline.firmware / fogline.boards so an installed fogline can deploy and run the demo.
No generic top-level name (gateway, tools, shared) lands in site-packages. On a board, `shared` and
`firmware` stay top-level packages (deploy copies them there); tests/ and tools/bench/ are not shipped.
Metadata and dependencies are in pyproject.toml.
"""

from setuptools import find_packages, setup

TOPS = ("gateway", "tools", "shared", "firmware", "boards")
setup(
    packages=[f"fogline.{p}" for p in find_packages(include=[f"{t}" for t in TOPS] + [f"{t}.*" for t in TOPS])],
    package_dir={f"fogline.{t}": t for t in TOPS},
)
