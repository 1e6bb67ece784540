#!/usr/bin/env bash
# Copy the datasets and the pretrained-model cache from the bucket to this node's disk (worker setup; rerun
# by `ray up` is cheap: `aws s3 sync` copies only what changed). Upload them once as cluster/README.md says.
set -euo pipefail
if [[ "$LANGDML_BUCKET" != s3://* ]]; then
  echo "LANGDML_BUCKET=$LANGDML_BUCKET is not s3://: nothing to sync (local test cluster)"
  exit 0
fi
mkdir -p "$LANGDML_DATA_ROOT" "$HOME/.cache/huggingface"
aws s3 sync --only-show-errors "$LANGDML_BUCKET/datasets" "$LANGDML_DATA_ROOT"
aws s3 sync --only-show-errors "$LANGDML_BUCKET/hf-cache" "$HOME/.cache/huggingface"
du -sh "$LANGDML_DATA_ROOT"/* "$HOME/.cache/huggingface" 2>/dev/null || true
