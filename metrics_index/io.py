"""Asset outputs as Parquet files a person can open: `{base_dir}/{asset}/{tenant}/{service}.parquet`.

Every write holds the catalog's exclusive lock (`{base_dir}/metrics-index.lock`, stores/lock.py), whichever process
writes: two writers of one file never share its temporary file. A file is replaced atomically, so reads need no lock.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext

from metrics_index.namespaces import Namespace
from metrics_index.stores.lock import DEFAULT_WAIT_SECONDS, StoreLock

LOCK_FILE = "metrics-index.lock"

PARQUET_IO = "parquet_io_manager"
"""The resource key of the Parquet IO manager, used by the assets that store DataFrames."""


class ParquetIOManager(ConfigurableIOManager):
    """Stores each partition of a DataFrame asset as one Parquet file (not a pickle)."""

    base_dir: str
    lock_wait_seconds: float = DEFAULT_WAIT_SECONDS

    def lock(self) -> StoreLock:
        return StoreLock(
            Path(self.base_dir) / LOCK_FILE, f"the Parquet catalog at {self.base_dir}", self.lock_wait_seconds
        )

    def path_for(self, asset_name: str, partition_key: str) -> Path:
        namespace = Namespace.parse(partition_key)  # its parts cannot hold '/' or start with '.': no escape
        return Path(self.base_dir) / asset_name / namespace.tenant / f"{namespace.service}.parquet"

    def load_partition(self, asset_name: str, partition_key: str) -> pd.DataFrame | None:
        """The last stored output of one partition, or None before its first materialization."""
        path = self.path_for(asset_name, partition_key)
        return pd.read_parquet(path) if path.exists() else None

    def load_previous(self, asset_name: str, partition_key: str) -> tuple[pd.DataFrame | None, str]:
        """The last stored output to compare with or reuse, and a warning when it exists but cannot be read: such
        a file (truncated by a full disk, a 0-byte leftover) is treated as absent, so its namespace is rebuilt
        rather than blocked forever; the next successful write replaces it."""
        try:
            return self.load_partition(asset_name, partition_key), ""
        except Exception as error:  # pyarrow raises several types (ArrowInvalid, OSError, thrift errors)
            path = self.path_for(asset_name, partition_key)
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            return None, f"previous {path} is unreadable and was treated as absent ({type(error).__name__}: {reason})"

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        path = self.path_for(context.asset_key.path[-1], context.partition_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".parquet.tmp")
        with self.lock().exclusive(context.log.warning):
            try:
                obj.to_parquet(temporary, index=False)
                temporary.replace(path)
            except BaseException:
                temporary.unlink(missing_ok=True)  # a failed write (full disk) leaves the previous file and no debris
                raise
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        asset_name = context.asset_key.path[-1]
        frame = self.load_partition(asset_name, context.partition_key)
        if frame is None:
            raise FileNotFoundError(f"{asset_name} has not been materialized for {context.partition_key}")
        return frame
