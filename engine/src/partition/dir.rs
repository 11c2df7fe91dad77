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
    // Discarded directories go first: a partition directory put back after its deletion was
    // cut short is renamed to the name its discarded copy still holds.
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_by_key(|name| !is_discarded(name));
    for name in names {
        let path = data_dir.join(&name);
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
    if disk.exists(&trash) {
        // An earlier copy of this directory, discarded and not yet removed.
        remove(disk, &trash).await?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn partition_dir(path: &Path, topic_id: uuid::Uuid) {
        std::fs::create_dir_all(path).unwrap();
        std::fs::write(
            path.join(METADATA_FILE),
            format!("version: 0\ntopic_id: {topic_id}\n"),
        )
        .unwrap();
        std::fs::write(path.join("00000000000000000000.log"), b"old records").unwrap();
    }

    /// A deletion cut short left its `-delete` copy, and the directory itself was put back:
    /// both go, whichever the directory listing names first.
    #[test]
    fn a_directory_put_back_beside_its_discarded_copy_is_removed() {
        let data = tempfile::tempdir().unwrap();
        let gone = uuid::Uuid::new_v4();
        let kept = uuid::Uuid::new_v4();
        for partition in 0..16 {
            let name = format!("old-{partition}");
            partition_dir(&data.path().join(&name), gone);
            partition_dir(
                &data
                    .path()
                    .join(format!("{name}.{}{DELETE_SUFFIX}", gone.simple())),
                gone,
            );
            partition_dir(&data.path().join(format!("live-{partition}")), kept);
        }
        sweep_at_start(data.path(), &[kept].into_iter().collect());
        let mut left: Vec<String> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut live: Vec<String> = (0..16).map(|p| format!("live-{p}")).collect();
        live.sort();
        assert_eq!(left, live);
    }
}
