#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""meson's bridge to cargo: builds the plugin library and copies it to meson's output."""
import os
import shutil
import subprocess
import sys

cargo, src, build, profile, out = sys.argv[1:6]
target_dir = os.environ.get("CARGO_TARGET_DIR") or os.path.join(build, "target")
cmd = [cargo, "build", "--locked", "--manifest-path", os.path.join(src, "Cargo.toml"),
       "-p", "gst-plugin-fmp4ingest", "--lib", "--target-dir", target_dir]
if profile == "release":
    cmd.append("--release")
subprocess.run(cmd, check=True)
shutil.copy2(os.path.join(target_dir, profile, os.path.basename(out)), out)
