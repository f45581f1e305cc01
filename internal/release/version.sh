#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Prints flowtap's version, a semantic version computed from git the way
# the Go toolchain computes module versions, so that the archives, the
# binaries and the SBOM agree:
#   HEAD tagged vX.Y.Z                    vX.Y.Z
#   commits after vX.Y.Z                  vX.Y.(Z+1)-0.<commit time>-<12-hex commit>
#   commits after vX.Y.Z-pre              vX.Y.Z-pre.0.<commit time>-<12-hex commit>
#   no release tag yet                    v0.0.0-<commit time>-<12-hex commit>
#   not a git checkout                    v0.0.0-dev
# Commit time is UTC, yyyymmddhhmmss. Only tags of the form vX.Y.Z or
# vX.Y.Z-pre count. Uncommitted changes do not change the version: the
# binaries report them separately (flowtap version: "modified tree").
set -eu

if ! head=$(git rev-parse --verify -q HEAD 2>/dev/null); then
	echo v0.0.0-dev
	exit 0
fi
short=$(git rev-parse --short=12 HEAD)
stamp=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)

tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*.[0-9]*.[0-9]*' HEAD 2>/dev/null || true)
if [ -n "$tag" ] && ! printf '%s\n' "$tag" | grep -Eq '^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$'; then
	echo "version.sh: tag $tag is not a semantic version (vMAJOR.MINOR.PATCH[-PRERELEASE]); delete it or tag a proper version" >&2
	exit 1
fi

if [ -z "$tag" ]; then
	echo "v0.0.0-$stamp-$short"
elif [ "$(git rev-list -n 1 "$tag")" = "$head" ]; then
	echo "$tag"
else
	case $tag in
	*-*) echo "$tag.0.$stamp-$short" ;;
	*)
		base=${tag%.*}
		patch=${tag##*.}
		echo "$base.$((patch + 1))-0.$stamp-$short"
		;;
	esac
fi
