//! The files of one job, named in one place: the decoder writes them under the request's output prefix, the
//! gateway serves, presigns and deletes them under `jobs/<id>`.
//!
//! Invariant: a job's files are exactly [`JobFile::ALL`], each at `<prefix>/<file name>`.

/// One file a finished job has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFile {
    /// The MP4.
    Video,
    /// PNG of the middle frame.
    Thumbnail,
    /// PNG grid of evenly spaced frames.
    Spritesheet,
    /// The uploaded reference image or video of a conditioned job, as uploaded (the gateway writes it).
    Reference,
}

impl JobFile {
    /// Every file of a job.
    pub const ALL: [JobFile; 4] = [JobFile::Video, JobFile::Thumbnail, JobFile::Spritesheet, JobFile::Reference];

    /// Its name under the job's prefix.
    pub fn file_name(self) -> &'static str {
        match self {
            JobFile::Video => "video.mp4",
            JobFile::Thumbnail => "thumbnail.png",
            JobFile::Spritesheet => "spritesheet.png",
            JobFile::Reference => "reference",
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            JobFile::Video => "video/mp4",
            JobFile::Thumbnail | JobFile::Spritesheet => "image/png",
            JobFile::Reference => "application/octet-stream",
        }
    }
}

/// Where one job's files are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutputs {
    prefix: String,
}

impl JobOutputs {
    /// The files of the gateway's job `id`: under `jobs/<id>`.
    pub fn of_job(id: &str) -> Self {
        Self { prefix: format!("jobs/{id}") }
    }

    /// The files under `prefix` (a decode request's `output_prefix`).
    pub fn at(prefix: &str) -> Self {
        Self { prefix: prefix.trim_end_matches('/').to_string() }
    }

    /// The prefix the files are under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The storage key of `file`.
    pub fn key(&self, file: JobFile) -> String {
        format!("{}/{}", self.prefix, file.file_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_files_lie_under_its_prefix() {
        let job = JobOutputs::of_job("video_1");
        assert_eq!(job, JobOutputs::at("jobs/video_1/"));
        let keys: Vec<String> = JobFile::ALL.iter().map(|f| job.key(*f)).collect();
        assert_eq!(
            keys,
            [
                "jobs/video_1/video.mp4",
                "jobs/video_1/thumbnail.png",
                "jobs/video_1/spritesheet.png",
                "jobs/video_1/reference"
            ]
        );
    }
}
