//! Whose a partition directory is, and how it goes away.
//!
//! Each partition directory holds `partition.metadata` naming the id of the topic it
//! belongs to, as Kafka's does, so a topic created again under an old name never opens the
//! old topic's records: a directory of another topic id is discarded before the new
//! partition starts in it. Discarding renames the directory to `<name>.<topic id>-delete`
//! (one atomic step, made durable with a sync of the data directory) and then removes it,
//! so a crash midway leaves only a `-delete` directory, which start-up removes.

use std::path::{Path, PathBuf};

use crate::io::Disk;
use crate::storage::StorageError;

pub const METADATA_FILE: &str = "partition.metadata";
pub const DELETE_SUFFIX: &str = "-delete";

/// The topic id `dir` belongs to, if it says.
pub async fn owner(disk: &Disk, dir: &Path) -> Result<Option<uuid::Uuid>, StorageError> {
    crate::storage::read_metadata_file(disk, &dir.join(METADATA_FILE), parse_owner).await
}

/// The topic id in the text of a `partition.metadata` file.
pub fn parse_owner(bytes: &[u8]) -> Result<uuid::Uuid, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let id = text
        .lines()
        .find_map(|line| line.strip_prefix("topic_id: "))
        .ok_or_else(|| "no topic_id line".to_string())?;
    uuid::Uuid::parse_str(id.trim()).map_err(|error| format!("topic_id {id}: {error}"))
}

/// At start-up, before any partition opens: removes discarded directories (a crash came
/// between their rename and their removal) and discards partition directories whose topic
/// id is in no topic of the catalog (a crash came between a topic's deletion from the
/// catalog and the rename of its directories). Blocking calls: nothing serves yet.
pub fn sweep_at_start(data_dir: &Path, topic_ids: &std::collections::BTreeSet<uuid::Uuid>) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let removed = if is_discarded(&name) {
            std::fs::remove_dir_all(&path)
        } else {
            let Ok(bytes) = std::fs::read(path.join(METADATA_FILE)) else {
                continue;
            };
            match parse_owner(&bytes) {
                Ok(id) if !topic_ids.contains(&id) => {
                    let trash =
                        path.with_file_name(format!("{name}.{}{DELETE_SUFFIX}", id.simple()));
                    std::fs::rename(&path, &trash)
                        .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
                        .and_then(|()| std::fs::remove_dir_all(&trash))
                }
                Ok(_) => continue,
                Err(reason) => {
                    tracing::warn!(dir = %path.display(), %reason, "unreadable partition.metadata; leaving the directory alone");
                    continue;
                }
            }
        };
        match removed {
            Ok(()) => tracing::info!(
                dir = name,
                "removed the directory of a deleted topic's partition"
            ),
            Err(error) => {
                tracing::warn!(dir = name, %error, "cannot remove a deleted topic's partition directory")
            }
        }
    }
}

/// Makes `dir` the directory of `topic_id`'s partition: creates it with its metadata, keeps
/// it when it already is, discards a directory of another topic first. A directory without
/// metadata (made before ringlog kept it, or by a crash right after its creation) is
/// adopted.
pub async fn claim(disk: &Disk, dir: &Path, topic_id: uuid::Uuid) -> Result<(), StorageError> {
    if disk.exists(dir) {
        match owner(disk, dir).await? {
            Some(id) if id == topic_id => return Ok(()),
            Some(other) => {
                tracing::info!(dir = %dir.display(), old_topic_id = %other, %topic_id, "partition directory belongs to a deleted topic; discarding it");
                if let Some(trash) = discard(disk, dir, other).await? {
                    remove(disk, &trash).await?;
                }
            }
            None => {}
        }
    }
    disk.create_dir_all(dir)
        .await
        .map_err(|source| StorageError::io("cannot create directory", dir, source))?;
    let metadata = format!("version: 0\ntopic_id: {topic_id}\n");
    disk.write_small_file(dir, METADATA_FILE, metadata.as_bytes())
        .await
        .map_err(|source| StorageError::io("cannot write", dir.join(METADATA_FILE), source))?;
    if let Some(parent) = dir.parent() {
        disk.sync_dir(parent)
            .await
            .map_err(|source| StorageError::io("cannot sync directory", parent, source))?;
    }
    Ok(())
}

/// Renames `dir` (of topic `topic_id`) out of the way, durably; returns where it went, or
/// `None` when there was no such directory. Nothing reads it after this.
pub async fn discard(
    disk: &Disk,
    dir: &Path,
    topic_id: uuid::Uuid,
) -> Result<Option<PathBuf>, StorageError> {
    if !disk.exists(dir) {
        return Ok(None);
    }
    let name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trash = dir.with_file_name(format!("{name}.{}{DELETE_SUFFIX}", topic_id.simple()));
    disk.rename(dir, &trash)
        .await
        .map_err(|source| StorageError::io("cannot rename", dir, source))?;
    if let Some(parent) = dir.parent() {
        disk.sync_dir(parent)
            .await
            .map_err(|source| StorageError::io("cannot sync directory", parent, source))?;
    }
    Ok(Some(trash))
}

/// Removes a discarded directory.
pub async fn remove(disk: &Disk, trash: &Path) -> Result<(), StorageError> {
    disk.remove_dir_all(trash)
        .await
        .map_err(|source| StorageError::io("cannot delete", trash, source))
}

/// Whether a data-directory entry is a discarded partition directory.
pub fn is_discarded(name: &str) -> bool {
    name.ends_with(DELETE_SUFFIX)
}
