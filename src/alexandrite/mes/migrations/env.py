from alexandrite.mes.tables import metadata
from alexandrite.kit.migrations import run_env

run_env(metadata)
