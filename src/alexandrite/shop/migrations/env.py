from alexandrite.kit.migrations import run_env
from alexandrite.shop.tables import metadata

run_env(metadata)
