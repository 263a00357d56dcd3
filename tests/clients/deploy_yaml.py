"""Reads every YAML file under deploy/ with PyYAML (not ours) and prints them as one
JSON object: {relative path: [document, ...]}, so tests/deploy.rs can check what the
compose file and the Kubernetes manifests say. Exits non-zero on a file that does not
parse. usage: deploy_yaml.py DEPLOY_DIR"""
import json
import pathlib
import sys

import yaml


def main():
    root = pathlib.Path(sys.argv[1])
    files = {}
    for path in sorted(list(root.rglob("*.yaml")) + list(root.rglob("*.yml"))):
        with open(path) as f:
            files[str(path.relative_to(root))] = [d for d in yaml.safe_load_all(f) if d is not None]
    json.dump(files, sys.stdout)


if __name__ == "__main__":
    main()
