"""How settings become the Quix Streams application's options (no broker needed)."""

from __future__ import annotations

from fraudrules.app import rocksdb_options
from fraudrules.settings import Settings, StateMemorySettings

MIB = 1024 * 1024


def test_state_memory_defaults_cap_rocksdb_far_below_quix_streams_own() -> None:
    options = rocksdb_options(Settings())

    assert options.block_cache_size == 64 * MIB  # Quix Streams' default: 1 GiB
    assert options.write_buffer_size == 8 * MIB  # 64 MiB
    assert options.max_write_buffer_number == 2  # 3


def test_state_memory_settings_reach_rocksdb() -> None:
    settings = Settings(state_memory=StateMemorySettings(block_cache_mb=256, write_buffer_mb=32, write_buffers=4))

    options = rocksdb_options(settings)

    assert (options.block_cache_size, options.write_buffer_size, options.max_write_buffer_number) == (
        256 * MIB,
        32 * MIB,
        4,
    )
