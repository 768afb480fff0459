//! S3 storage on aws-sdk-s3: AWS itself, or any S3-compatible server through `endpoint` + path-style addressing.
//! Objects at or above `multipart_threshold` bytes go up as a multipart upload of `part_size` parts (aborted on
//! failure so no orphaned parts are billed); presigned GETs let clients download without credentials.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use crate::{ObjectRef, S3Config, Storage, StorageError, sha256_hex, validate_key};

/// Objects in one bucket.
#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    config: S3Config,
}

fn io(key: &str, e: impl std::error::Error) -> StorageError {
    StorageError::Io(key.to_string(), DisplayErrorContext(e).to_string())
}

impl S3Storage {
    /// A client for `config.bucket` (no request is made until the first operation).
    pub async fn new(config: S3Config) -> Result<Self, StorageError> {
        if config.bucket.is_empty() {
            return Err(StorageError::Config("s3.bucket is empty".into()));
        }
        if config.part_size < 5 << 20 || config.multipart_threshold < config.part_size {
            return Err(StorageError::Config(
                "s3.part_size must be >= 5 MiB and s3.multipart_threshold >= part_size".into(),
            ));
        }
        if config.access_key_id.is_empty() != config.secret_access_key.is_empty() {
            return Err(StorageError::Config("set both s3.access_key_id and s3.secret_access_key, or neither".into()));
        }
        let mut builder = if config.access_key_id.is_empty() {
            let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
            aws_sdk_s3::config::Builder::from(&shared)
        } else {
            aws_sdk_s3::config::Builder::new().behavior_version(BehaviorVersion::latest()).credentials_provider(
                Credentials::new(&config.access_key_id, &config.secret_access_key, None, None, "vidmesh-config"),
            )
        };
        builder = builder.region(Region::new(config.region.clone())).force_path_style(config.force_path_style);
        if !config.endpoint.is_empty() {
            builder = builder.endpoint_url(&config.endpoint);
        }
        Ok(Self { client: Client::from_conf(builder.build()), config })
    }

    fn object_key(&self, key: &str) -> Result<String, StorageError> {
        validate_key(key)?;
        Ok(format!("{}{key}", self.config.prefix))
    }

    async fn put_multipart(&self, key: &str, data: &Bytes, content_type: &str) -> Result<(), StorageError> {
        let b = &self.config.bucket;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(b)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| io(key, e))?;
        let upload_id = created.upload_id().ok_or_else(|| StorageError::Io(key.into(), "no upload id".into()))?;
        let upload = async {
            let mut parts = Vec::new();
            for (i, chunk) in data.chunks(self.config.part_size).enumerate() {
                let n = i as i32 + 1;
                let part = self
                    .client
                    .upload_part()
                    .bucket(b)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(n)
                    .body(ByteStream::from(data.slice_ref(chunk)))
                    .send()
                    .await
                    .map_err(|e| io(key, e))?;
                parts.push(CompletedPart::builder().set_e_tag(part.e_tag().map(str::to_string)).part_number(n).build());
            }
            self.client
                .complete_multipart_upload()
                .bucket(b)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| io(key, e))?;
            Ok::<(), StorageError>(())
        };
        if let Err(e) = upload.await {
            tracing::warn!(key, "multipart upload failed, aborting: {e}");
            let _ = self.client.abort_multipart_upload().bucket(b).key(key).upload_id(upload_id).send().await;
            return Err(e);
        }
        Ok(())
    }
}

impl S3Storage {
    /// Streams object `key` into the file `path` (written as `path` + `.part`, renamed when complete), hashing it
    /// on the way: memory stays at one body chunk whatever the object's size. Returns the lowercase hex sha256.
    pub async fn download(&self, key: &str, path: &std::path::Path) -> Result<String, StorageError> {
        use sha2::Digest as _;
        use tokio::io::AsyncWriteExt as _;
        let object = self.object_key(key)?;
        let mut out = match self.client.get_object().bucket(&self.config.bucket).key(&object).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(StorageError::NotFound(key.to_string()));
            }
            Err(e) => return Err(io(&object, e)),
        };
        let tmp = path.with_extension(format!(
            "{}.part",
            path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        let local = |e: std::io::Error| io(&tmp.display().to_string(), e);
        let mut file = tokio::fs::File::create(&tmp).await.map_err(local)?;
        let mut hash = sha2::Sha256::new();
        while let Some(chunk) = out.body.try_next().await.map_err(|e| io(&object, e))? {
            hash.update(&chunk);
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.flush().await.map_err(local)?;
        drop(file);
        tokio::fs::rename(&tmp, path).await.map_err(local)?;
        Ok(hex::encode(hash.finalize()))
    }
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    async fn put(&self, key: &str, data: Bytes, content_type: &str) -> Result<ObjectRef, StorageError> {
        let object = self.object_key(key)?;
        let sha256 = sha256_hex(&data);
        let len = data.len() as u64;
        if data.len() >= self.config.multipart_threshold {
            self.put_multipart(&object, &data, content_type).await?;
        } else {
            self.client
                .put_object()
                .bucket(&self.config.bucket)
                .key(&object)
                .content_type(content_type)
                .body(ByteStream::from(data))
                .send()
                .await
                .map_err(|e| io(&object, e))?;
        }
        Ok(ObjectRef { uri: format!("s3://{}/{object}", self.config.bucket), key: key.to_string(), sha256, bytes: len })
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let object = self.object_key(key)?;
        match self.client.get_object().bucket(&self.config.bucket).key(&object).send().await {
            Ok(out) => Ok(out.body.collect().await.map_err(|e| io(&object, e))?.into_bytes()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => Err(io(&object, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let object = self.object_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(&object)
            .send()
            .await
            .map_err(|e| io(&object, e))?;
        Ok(())
    }

    async fn presigned_get(&self, key: &str, expires_in: Duration) -> Result<Option<String>, StorageError> {
        let object = self.object_key(key)?;
        let cfg = PresigningConfig::expires_in(expires_in).map_err(|e| StorageError::Config(e.to_string()))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(&object)
            .presigned(cfg)
            .await
            .map_err(|e| io(&object, e))?;
        Ok(Some(req.uri().to_string()))
    }

    fn key_of(&self, uri: &str) -> Result<String, StorageError> {
        let unknown = |why: &str| StorageError::UnknownUri(uri.to_string(), why.to_string());
        let rest = uri.strip_prefix("s3://").ok_or_else(|| unknown("not an s3:// URI"))?;
        let (bucket, object) = rest.split_once('/').ok_or_else(|| unknown("no key after the bucket"))?;
        if bucket != self.config.bucket {
            return Err(unknown("a different bucket"));
        }
        let key = object.strip_prefix(&self.config.prefix).ok_or_else(|| unknown("outside this storage's prefix"))?;
        validate_key(key)?;
        Ok(key.to_string())
    }
}
