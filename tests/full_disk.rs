//! A full disk under the state dir: changes made through the mount while the journal cannot be
//! written are kept and written once there is room, never dropped.

mod harness;

use std::fs;
use std::process::Command;
use std::time::Duration;

use harness::{Mount, tree, wait_until};

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn changes_made_while_the_state_disk_is_full_are_pushed_once_there_is_room() {
    let mut m = Mount::prepare_with_cloud("", &["--pull-interval", "1h"], &[]);
    m.cloud_url = format!("file://{}", m.cloud.display());
    fs::create_dir_all(&m.state).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
        .arg(&m.state)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _tmpfs = Tmpfs(m.state.clone());
    m.spawn();
    fs::write(m.m("before.txt"), "before").unwrap();
    m.wait_all_synced();
    // Fill the state disk.
    let filler = m.state.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .status();
    for i in 0..20 {
        fs::write(m.m(&format!("during-{i:02}.txt")), format!("written {i}")).unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        m.log_text().contains("cannot write changes to the journal"),
        "the disk did not fill: {}",
        m.log_text()
    );
    assert_ne!(m.status("during-00.txt").as_deref(), Some("synced"));
    fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(40), "every change in the cloud", || {
        (0..20).all(|i| {
            fs::read_to_string(m.c(&format!("during-{i:02}.txt")))
                .is_ok_and(|s| s == format!("written {i}"))
        })
    });
    m.wait_all_synced();
    let skip = |n: &str| n.starts_with(".cloudsync");
    assert_eq!(tree(&m.onprem, &skip), tree(&m.cloud, &skip));
    m.unmount();
}
