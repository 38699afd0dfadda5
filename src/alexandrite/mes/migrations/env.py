from alexandrite.kit.migrations import run_env
from alexandrite.mes.tables import metadata

run_env(metadata)
