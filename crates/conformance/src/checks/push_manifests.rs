//! Push, manifests: by tag and by digest (Location, Docker-Content-Digest, bytes kept
//! exactly), images without layers, unknown fields and data fields, Docker schema 2, indexes
//! (nested, empty), references to unknown content, non-distributable layers, sha512 digests,
//! large manifests and subjects that do not exist, as in the official suite's
//! `02_push_test.go` and the newer runner's data tests.

use serde_json::json;

use super::{
    Ctx, Recorder, check_manifest, cleanup, fetch_manifest, manifest_path, push_blobs,
    push_manifest, put_manifest,
};
use crate::data::{
    self, Blob, DOCKER_CONFIG, DOCKER_MANIFEST, Extras, Manifest, OCI_CONFIG, OCI_LAYER,
    OCI_MANIFEST, sha256, sha512,
};
use crate::http::{Endpoint, Resp};

/// Non-distributable layer media types (deprecated in image-spec 1.1, still pushed by the
/// official runner, which expects them accepted without the blobs).
const NONDISTRIBUTABLE_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const NONDISTRIBUTABLE: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";

pub(super) async fn run(ctx: &Ctx, rec: &mut Recorder<'_>, repo: &str) {
    let t = &ctx.target;
    let config = ctx.config("push-manifests");
    let config2 = ctx.config("push-no-layers");
    let layer = Blob::random(1000, ctx.seed(20));
    rec.check(
        "push/setup",
        push_blobs(t, repo, &[&config, &config2, &layer]),
    )
    .await;
    let image = data::simple_image(&config, &[&layer]);
    let no_layers = data::simple_image(&config2, &[]);
    let mut pushed: Vec<String> = vec![image.digest.clone(), no_layers.digest.clone()];

    rec.check("push/manifest-put-tag", async {
        for tag in ["test0", "test1", "test2", "test3"] {
            let resp = push_manifest(t, repo, tag, &image).await?;
            check_put_manifest(t, &resp, &image).await?;
        }
        Ok(())
    })
    .await;
    rec.check("push/manifest-put-digest", async {
        let resp = push_manifest(t, repo, &image.digest, &image).await?;
        check_put_manifest(t, &resp, &image).await?;
        let resp = fetch_manifest(t, repo, &image.digest, false).await?;
        check_manifest(&resp, &image, false)
    })
    .await;
    rec.check("push/manifest-no-layers", async {
        let resp = push_manifest(t, repo, "emptylayer", &no_layers).await?;
        check_put_manifest(t, &resp, &no_layers).await
    })
    .await;
    let custom = custom_fields_manifest(&config);
    pushed.push(custom.digest.clone());
    rec.check("push/manifest-custom-fields", async {
        let resp = push_manifest(t, repo, "custom-fields", &custom).await?;
        check_put_manifest(t, &resp, &custom).await
    })
    .await;
    let docker = Manifest::from_json(
        &json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.descriptor(DOCKER_CONFIG),
            "layers": [layer.descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip")],
        }),
        DOCKER_MANIFEST,
    );
    pushed.push(docker.digest.clone());
    rec.check("push/manifest-docker-v2", async {
        let resp = push_manifest(t, repo, "docker", &docker).await?;
        check_put_manifest(t, &resp, &docker).await
    })
    .await;
    let index = data::index(
        vec![
            data::platform_descriptor(&image, "amd64"),
            data::platform_descriptor(&no_layers, "arm64"),
        ],
        Extras::default(),
    );
    let nested = data::index(vec![index.descriptor()], Extras::default());
    pushed.extend([nested.digest.clone(), index.digest.clone()]);
    rec.check("push/index", async {
        let resp = push_manifest(t, repo, "index", &index).await?;
        check_put_manifest(t, &resp, &index).await
    })
    .await;
    rec.check("push/index-nested", async {
        let resp = push_manifest(t, repo, "index-of-index", &nested).await?;
        check_put_manifest(t, &resp, &nested).await
    })
    .await;
    rec.check("push/manifest-unknown-blob", async {
        let unknown = Blob::random(100, ctx.seed(21));
        let m = data::simple_image(&config, &[&layer, &unknown]);
        let resp = put_manifest(t, repo, "unknown-blob", &m).await?;
        accepted_or_blob_unknown(&resp)
    })
    .await;
    rec.check("push/index-unknown-child", async {
        let absent = data::simple_image(&config2, &[&Blob::random(10, ctx.seed(22))]);
        let m = data::index(vec![absent.descriptor()], Extras::default());
        let resp = put_manifest(t, repo, "unknown-child", &m).await?;
        accepted_or_blob_unknown(&resp)
    })
    .await;
    let large = data::large_image(&config2, 4_000_000);
    pushed.push(large.digest.clone());
    rec.check("push/manifest-large", async {
        let resp = push_manifest(t, repo, "large-manifest", &large).await?;
        check_put_manifest(t, &resp, &large).await
    })
    .await;
    let missing_subject = Manifest::from_bytes(b"never pushed".to_vec(), OCI_MANIFEST);
    let referrer = data::image(
        Blob::new(b"{}".to_vec()).descriptor(data::OCI_EMPTY),
        vec![layer.descriptor(OCI_LAYER)],
        Extras {
            artifact_type: Some("application/vnd.shoal.conformance.push".into()),
            subject: Some(missing_subject.descriptor()),
            annotations: None,
        },
    );
    pushed.push(referrer.digest.clone());
    rec.check("push/manifest-subject-missing", async {
        push_blobs(t, repo, &[&Blob::new(b"{}".to_vec())]).await?;
        let resp = push_manifest(t, repo, &referrer.digest, &referrer).await?;
        check_put_manifest(t, &resp, &referrer).await
    })
    .await;
    let empty_index = data::index(Vec::new(), Extras::default());
    pushed.push(empty_index.digest.clone());
    rec.check("push/index-empty", async {
        let resp = push_manifest(t, repo, "empty-index", &empty_index).await?;
        check_put_manifest(t, &resp, &empty_index).await
    })
    .await;
    let foreign = nondistributable_image(&config, &layer, ctx.seed);
    pushed.push(foreign.digest.clone());
    rec.check("push/manifest-nondistributable", async {
        let resp = push_manifest(t, repo, "non-distributable", &foreign).await?;
        check_put_manifest(t, &resp, &foreign).await
    })
    .await;
    let (config512, layer512) = (
        sha512_blob(&ctx.config("push-sha512").bytes),
        sha512_blob(b"layer"),
    );
    let mut m512 = data::image(
        config512.descriptor(OCI_CONFIG),
        vec![layer512.descriptor(OCI_LAYER)],
        Extras::default(),
    );
    m512.digest = sha512(&m512.bytes);
    pushed.push(m512.digest.clone());
    rec.check("push/manifest-sha512", async {
        push_blobs(t, repo, &[&config512, &layer512]).await?;
        let resp = push_manifest(t, repo, &m512.digest, &m512).await?;
        check_put_manifest(t, &resp, &m512).await?;
        let resp = fetch_manifest(t, repo, &m512.digest, true).await?;
        check_manifest(&resp, &m512, true)
    })
    .await;
    rec.check("push/manifest-tag-param", async {
        // The sha512 manifest again, by digest with two tags (one repeated): both tags are
        // applied and reported, and name the digest the client chose.
        let path = format!(
            "{}?tag=tag-param-a&tag=tag-param-b&tag=tag-param-a",
            manifest_path(repo, &m512.digest)
        );
        let resp = t
            .send(
                t.put(&path)
                    .header("content-type", m512.media_type.as_str())
                    .body(m512.bytes.clone()),
            )
            .await?;
        check_put_manifest(t, &resp, &m512).await?;
        let reported: Vec<&str> = resp
            .headers
            .get_all("oci-tag")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for tag in ["tag-param-a", "tag-param-b"] {
            if !reported.contains(&tag) {
                return Err(format!(
                    "{}: no OCI-Tag {tag} (got {reported:?})",
                    resp.what
                ));
            }
            let resp = fetch_manifest(t, repo, tag, false).await?;
            check_manifest(&resp, &m512, false)?;
            if let Some(d) = resp.header("docker-content-digest")
                && d != m512.digest
            {
                return Err(format!(
                    "{}: Docker-Content-Digest {d}, expected the pushed {}",
                    resp.what, m512.digest
                ));
            }
        }
        Ok(())
    })
    .await;
    rec.check("push/error-code", async {
        let resp = t
            .send(
                t.put(&manifest_path(repo, "sha256:totallywrong"))
                    .header("content-type", OCI_MANIFEST)
                    .body(b"blablabla".to_vec()),
            )
            .await?;
        resp.expect(&[400])?;
        match resp.error_codes() {
            Some(codes) if !codes.is_empty() => Ok(()),
            _ => Err(resp.fail("400 with a spec error body")),
        }
    })
    .await;

    let manifests: Vec<&str> = pushed.iter().map(String::as_str).collect();
    let blobs = [
        config.digest.as_str(),
        config2.digest.as_str(),
        layer.digest.as_str(),
        config512.digest.as_str(),
        layer512.digest.as_str(),
    ];
    cleanup(t, repo, &manifests, &blobs).await;
}

/// A pushed manifest: 201 with a `Location` that serves it and, if present, its digest.
async fn check_put_manifest(t: &Endpoint, resp: &Resp, manifest: &Manifest) -> Result<(), String> {
    resp.expect(&[201])?;
    if let Some(d) = resp.header("docker-content-digest")
        && d != manifest.digest
    {
        return Err(format!(
            "{}: Docker-Content-Digest {d}, expected {}",
            resp.what, manifest.digest
        ));
    }
    let location = resp.required_header("location")?;
    let get = t
        .send(t.get(location).header("accept", data::ACCEPT_MANIFESTS))
        .await?;
    check_manifest(&get, manifest, false).map_err(|e| format!("the returned Location: {e}"))
}

/// A manifest referencing unknown content: accepted, or refused with `MANIFEST_BLOB_UNKNOWN`
/// (the spec lets registries do either, but a refusal must use that code).
fn accepted_or_blob_unknown(resp: &Resp) -> Result<(), String> {
    if resp.status == 201 {
        return Ok(());
    }
    resp.expect_error(&[400, 404], &["MANIFEST_BLOB_UNKNOWN"])
        .map_err(|e| format!("{e} (or 201)"))
}

/// A blob addressed by its sha512 digest.
fn sha512_blob(bytes: &[u8]) -> Blob {
    Blob {
        bytes: bytes.to_vec(),
        digest: sha512(bytes),
    }
}

/// An image with two non-distributable layers (never pushed: they carry `urls`) and one
/// ordinary layer, as in the official runner's "Non-distributable Layers" data.
fn nondistributable_image(config: &Blob, layer: &Blob, seed: u64) -> Manifest {
    let foreign = |n: u64, media_type: &str, size: usize| {
        let digest = sha256(&data::random_bytes(256, seed ^ n));
        let url = format!("https://store.example.com/blobs/sha256/{}", &digest[7..]);
        json!({"mediaType": media_type, "digest": digest, "size": size, "urls": [url]})
    };
    data::image(
        config.descriptor(OCI_CONFIG),
        vec![
            foreign(1, NONDISTRIBUTABLE_GZIP, 123_456),
            foreign(2, NONDISTRIBUTABLE, 12_345),
            layer.descriptor(OCI_LAYER),
        ],
        Extras::default(),
    )
}

/// An image manifest with a descriptor `data` field, fields the spec does not define and
/// pretty-printing with tabs: the registry must keep all of it byte for byte.
fn custom_fields_manifest(config: &Blob) -> Manifest {
    let data64 = base64(&config.bytes);
    let body = format!(
        "{{\n\t\"schemaVersion\": 2,\n\t\"mediaType\": \"{OCI_MANIFEST}\",\n\t\"config\": {{\n\t\t\
         \"mediaType\": \"{OCI_CONFIG}\",\n\t\t\"digest\": \"{}\",\n\t\t\"size\": {},\n\t\t\
         \"data\": \"{data64}\",\n\t\t\"newUnspecifiedField\": \"aGVsbG8gd29ybGQ=\"\n\t}},\n\t\
         \"layers\": [],\n\t\"x-shoal-conformance\": {{\"nested\": [1, 2.5, null, true]}}\n}}\n",
        config.digest,
        config.bytes.len()
    );
    Manifest::from_bytes(body.into_bytes(), OCI_MANIFEST)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encodes_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"hello world"), "aGVsbG8gd29ybGQ=");
    }

    #[test]
    fn custom_fields_manifest_is_json() {
        let m = custom_fields_manifest(&data::config("x"));
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        assert_eq!(v["config"]["newUnspecifiedField"], "aGVsbG8gd29ybGQ=");
    }
}
