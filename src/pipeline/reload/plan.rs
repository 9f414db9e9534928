//! What a new configuration changes: cameras added, removed and changed, whether the
//! model must be loaded again, and which sections only take effect at a restart.

use std::path::Path;
use std::time::SystemTime;

use crate::capture::CameraConfig;
use crate::config::Config;
use crate::inference::ModelConfig;
use crate::labels::LabelsSource;

/// The difference between the running configuration and a new one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub added: Vec<CameraConfig>,
    pub removed: Vec<String>,
    /// Cameras whose settings changed: stopped and started again.
    pub changed: Vec<CameraConfig>,
    /// Cameras whose regions (or `full_frame`) alone changed: given the new ones while
    /// their source stays open.
    pub retargeted: Vec<CameraConfig>,
    /// The model must be loaded again.
    pub model: bool,
    /// Sections that changed but only take effect at the next start.
    pub restart_needed: Vec<&'static str>,
}

impl Plan {
    /// The plan from `old` to `new`; `old_files`/`new_files` are the model's file
    /// fingerprints as they were when the old model was loaded and as they are now.
    pub fn new(old: &Config, new: &Config, old_files: &ModelFiles, new_files: &ModelFiles) -> Plan {
        let mut plan = Plan::default();
        for cam in &new.cameras {
            match old.cameras.iter().find(|c| c.id == cam.id) {
                None => plan.added.push(cam.clone()),
                Some(before) if before == cam => {}
                Some(before) if before.same_source_as(cam) => plan.retargeted.push(cam.clone()),
                Some(_) => plan.changed.push(cam.clone()),
            }
        }
        plan.removed = old
            .cameras
            .iter()
            .filter(|c| !new.cameras.iter().any(|n| n.id == c.id))
            .map(|c| c.id.clone())
            .collect();
        plan.model = old.model != new.model || old_files != new_files;
        let sections: [(&'static str, bool); 4] = [
            ("mqtt", old.mqtt != new.mqtt),
            (
                "admin",
                old.admin_listen != new.admin_listen || old.admin_token != new.admin_token,
            ),
            ("homeassistant", old.homeassistant != new.homeassistant),
            ("log", old.log_level != new.log_level),
        ];
        plan.restart_needed = sections
            .into_iter()
            .filter_map(|(name, changed)| changed.then_some(name))
            .collect();
        plan
    }

    /// Nothing to apply.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.retargeted.is_empty()
            && !self.model
    }

    /// Ids of the cameras added, removed, changed and with new regions, for the log.
    pub fn summary(&self) -> [Vec<&str>; 4] {
        fn ids(cams: &[CameraConfig]) -> Vec<&str> {
            cams.iter().map(|c| c.id.as_str()).collect()
        }
        [
            ids(&self.added),
            self.removed.iter().map(String::as_str).collect(),
            ids(&self.changed),
            ids(&self.retargeted),
        ]
    }
}

/// Size and modification time of a file (none when it cannot be read).
type Stamp = Option<(u64, SystemTime)>;

/// What identifies the model's files on disk: a model replaced in place (same path, new
/// file) is a changed model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    model: Stamp,
    labels: Stamp,
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

impl ModelFiles {
    pub fn of(cfg: &ModelConfig) -> ModelFiles {
        ModelFiles {
            model: stamp(&cfg.path),
            labels: match &cfg.labels {
                LabelsSource::File(path) => stamp(path),
                LabelsSource::ImageNet => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cameras: &str, model: &str) -> Config {
        let text =
            format!("[mqtt]\nhost = \"localhost\"\n[model]\npath = \"m.onnx\"\n{model}\n{cameras}");
        Config::parse(&text, Path::new("/etc/streamclassd")).expect("valid config")
    }

    const TWO: &str = "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/a\"\n\
                       [[camera]]\nid = \"b\"\nsource = \"rtsp://h/b\"\nfps = 2\n";

    #[test]
    fn cameras_added_removed_and_changed_are_told_apart() {
        let files = ModelFiles {
            model: None,
            labels: None,
        };
        let old = config(TWO, "");
        let new = config(
            "[[camera]]\nid = \"b\"\nsource = \"rtsp://h/b\"\nfps = 5\n\
             [[camera]]\nid = \"c\"\nsource = \"rtsp://h/c\"\n",
            "",
        );
        let plan = Plan::new(&old, &new, &files, &files);
        let none: Vec<&str> = Vec::new();
        assert_eq!(plan.summary(), [vec!["c"], vec!["a"], vec!["b"], none]);
        assert!(!plan.model);
        assert!(plan.restart_needed.is_empty());
        assert!(Plan::new(&old, &old, &files, &files).is_empty());
    }

    #[test]
    fn new_regions_alone_keep_the_source_open_and_a_new_source_does_not() {
        let files = ModelFiles {
            model: None,
            labels: None,
        };
        let old = config(TWO, "");
        let region = "[[camera.region]]\nname = \"door\"\nrect = [0, 0, 64, 64]\n";
        // b gets a region; a's whole frame is switched off for a region.
        let new = config(
            &format!(
                "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/a\"\nfull_frame = false\n{region}\
                 [[camera]]\nid = \"b\"\nsource = \"rtsp://h/b\"\nfps = 2\n{region}"
            ),
            "",
        );
        let plan = Plan::new(&old, &new, &files, &files);
        let none: Vec<&str> = Vec::new();
        assert_eq!(
            plan.summary(),
            [none.clone(), none.clone(), none, vec!["a", "b"]]
        );
        assert!(!plan.is_empty());
        // A region and another fps: the camera starts again.
        let both = config(
            &format!("[[camera]]\nid = \"b\"\nsource = \"rtsp://h/b\"\nfps = 3\n{region}"),
            "",
        );
        assert_eq!(Plan::new(&new, &both, &files, &files).changed.len(), 1);
    }

    #[test]
    fn a_model_setting_or_a_rewritten_file_reloads_the_model() {
        let files = ModelFiles {
            model: Some((10, SystemTime::UNIX_EPOCH)),
            labels: None,
        };
        let old = config(TWO, "");
        let plan = Plan::new(&old, &config(TWO, "top_k = 3"), &files, &files);
        assert!(plan.model && plan.added.is_empty() && plan.changed.is_empty());
        let rewritten = ModelFiles {
            model: Some((11, SystemTime::UNIX_EPOCH)),
            labels: None,
        };
        assert!(Plan::new(&old, &old, &files, &rewritten).model);
    }

    #[test]
    fn auto_workers_follow_the_cameras_and_given_ones_do_not() {
        let files = ModelFiles {
            model: None,
            labels: None,
        };
        let one = "[[camera]]\nid = \"a\"\nsource = \"rtsp://h/a\"\n";
        let auto = "workers = \"auto\"\nthreads = \"auto\"";
        // A second live camera can keep a second worker busy: with two CPUs or more,
        // "auto" goes from one worker to two, and the model is loaded again for them.
        let (old, new) = (config(one, auto), config(TWO, auto));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(old.model.parallelism().workers, 1);
        assert_eq!(new.model.parallelism().workers, 2.min(cpus));
        assert_eq!(Plan::new(&old, &new, &files, &files).model, cpus >= 2);
        // Given counts do not depend on the cameras.
        let given = "workers = 1\nthreads = 2";
        assert!(!Plan::new(&config(one, given), &config(TWO, given), &files, &files).model);
    }

    #[test]
    fn connection_settings_need_a_restart() {
        let files = ModelFiles {
            model: None,
            labels: None,
        };
        let old = config(TWO, "");
        let mut new = old.clone();
        new.mqtt.servers[0].port = 8883;
        new.log_level = "debug".into();
        let plan = Plan::new(&old, &new, &files, &files);
        assert_eq!(plan.restart_needed, vec!["mqtt", "log"]);
        assert!(plan.is_empty(), "nothing the running process applies");
    }
}
