#!/bin/sh
# The trainer container's command: data fetch -> train -> export, per task.
#   SEQSERVE_TRAIN_TASKS    tasks, space separated (default: sentiment tagging translation)
#   SEQSERVE_TRAIN_PROFILE  quick | full (default: quick)
#   SEQSERVE_TRAIN_FORCE    1 trains again although the repository has the task
#   SEQSERVE_REPOSITORY     the model repository (default: /models)
set -eu
tasks=${SEQSERVE_TRAIN_TASKS:-sentiment tagging translation}
profile=${SEQSERVE_TRAIN_PROFILE:-quick}
repository=${SEQSERVE_REPOSITORY:-/models}
# The host's CA bundle (a compose secret), where a proxy re-signs TLS: pip and npm
# download the corpora through it.
if [ -s /run/secrets/ca-bundle ]; then
  export PIP_CERT=/run/secrets/ca-bundle NODE_EXTRA_CA_CERTS=/run/secrets/ca-bundle
fi

for task in $tasks; do
  # A restarted stack should not retrain for minutes: keep what is exported.
  if [ "${SEQSERVE_TRAIN_FORCE:-0}" != 1 ] && [ -n "$(find "$repository/$task" -name manifest.json 2>/dev/null | head -n 1)" ]; then
    echo "seqserve-train: $repository/$task already has models; SEQSERVE_TRAIN_FORCE=1 trains again"
    continue
  fi
  seqserve data fetch --tasks "$task"
  seqserve train --task "$task" --profile "$profile"
  seqserve export --task "$task" --repository "$repository"
done
