//! Installed packages from RPM: `rpm -qa` with a query format that puts one package per line.

use std::path::Path;

use super::{Package, Partial};

/// Tab-separated: name, epoch, version, release, arch, source RPM, install time.
pub const QUERY_FORMAT: &str =
    "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{INSTALLTIME}\\n";

/// Packages and the latest install time, from `rpm`; nothing when this is not an RPM system.
pub fn collect(root: &Path, partial: &mut Vec<Partial>) -> (Vec<Package>, Option<i64>) {
    let rpmdb = ["var/lib/rpm", "usr/lib/sysimage/rpm"]
        .iter()
        .any(|p| root.join(p).is_dir());
    if !rpmdb {
        return (Vec::new(), None);
    }
    match std::process::Command::new("rpm")
        .args(["-qa", "--queryformat", QUERY_FORMAT])
        .output()
    {
        Ok(out) if out.status.success() => parse_query(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            partial.push(Partial::new(
                "packages",
                format!("rpm -qa failed ({}): {}", out.status, stderr.trim()),
            ));
            (Vec::new(), None)
        }
        Err(err) => {
            partial.push(Partial::new(
                "packages",
                format!("an RPM database exists but rpm cannot be run: {err}"),
            ));
            (Vec::new(), None)
        }
    }
}

/// Packages from [`QUERY_FORMAT`] output, and the latest install time among them.
pub fn parse_query(text: &str) -> (Vec<Package>, Option<i64>) {
    let mut latest = None;
    let packages = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [name, epoch, version, release, arch, source, installed] = fields[..] else {
                return None;
            };
            if name.is_empty() || version.is_empty() {
                return None;
            }
            let version = match epoch {
                "(none)" | "" | "0" => format!("{version}-{release}"),
                epoch => format!("{epoch}:{version}-{release}"),
            };
            if let Ok(time) = installed.parse::<i64>() {
                latest = latest.max(Some(time));
            }
            Some(Package {
                name: name.to_owned(),
                version,
                arch: arch.to_owned(),
                source: source_name(source),
                manager: "rpm",
            })
        })
        .collect();
    (packages, latest)
}

/// `openssl-3.0.7-25.el9.src.rpm` → `openssl`: the source package's name.
fn source_name(source_rpm: &str) -> Option<String> {
    let base = source_rpm
        .strip_suffix(".src.rpm")
        .or_else(|| source_rpm.strip_suffix(".nosrc.rpm"))?;
    // name-version-release: the name is what is left after the last two dashes.
    let (rest, _release) = base.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_output_with_and_without_epoch() {
        let text = "openssl-libs\t1\t3.0.7\t25.el9_3\tx86_64\topenssl-3.0.7-25.el9_3.src.rpm\t1700000000\n\
                    bash\t(none)\t5.1.8\t6.el9_1\tx86_64\tbash-5.1.8-6.el9_1.src.rpm\t1690000000\n\
                    gpg-pubkey\t(none)\t3228467c\t613798eb\t(none)\t(none)\t1600000000\n\
                    truncated\tline\n";
        let (packages, latest) = parse_query(text);
        assert_eq!(packages.len(), 3);
        assert_eq!(packages[0].name, "openssl-libs");
        assert_eq!(packages[0].version, "1:3.0.7-25.el9_3");
        assert_eq!(packages[0].source.as_deref(), Some("openssl"));
        assert_eq!(packages[1].version, "5.1.8-6.el9_1");
        assert_eq!(packages[2].source, None);
        assert_eq!(latest, Some(1700000000));
    }

    #[test]
    fn no_rpm_database_means_no_rpm_packages_and_no_complaint() {
        let root = tempfile::tempdir().unwrap();
        let mut partial = Vec::new();
        assert_eq!(collect(root.path(), &mut partial), (Vec::new(), None));
        assert!(partial.is_empty());
    }
}
