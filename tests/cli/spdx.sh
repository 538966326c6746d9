#!/bin/sh
# SPDX-License-Identifier: MIT
# Every source file carries "SPDX-License-Identifier: MIT" in its first 5 lines
# (tools/spdx.sh --check; tools/spdx.sh adds the missing lines).
NAME=spdx
tools/spdx.sh --check
