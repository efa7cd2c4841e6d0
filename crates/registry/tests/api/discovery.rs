//! Content discovery: tag lists and the catalog with pagination, and the referrers API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    CONFIG_TYPE, EMPTY_TYPE, OCI_INDEX, OCI_MANIFEST, Registry, assert_error, header,
    image_manifest, sha256,
};

const REPO: &str = "discovery/test";

async fn tags_page(reg: &Registry, path: &str) -> (Vec<String>, Option<String>) {
    let resp = reg.get(path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    assert_eq!(header(&resp, "content-type"), "application/json");
    let link = resp
        .headers()
        .get("link")
        .map(|l| l.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["name"], REPO);
    let tags = body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (tags, link)
}

#[tokio::test]
async fn tags_list_paginates_with_n_last_and_link() {
    let reg = Registry::start().await;
    let (manifest, _) = reg.push_image(REPO, "test3", "img").await;
    for tag in ["test1", "test0", "test2"] {
        let resp = reg.put_manifest(REPO, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let list = format!("/v2/{REPO}/tags/list");

    let (tags, link) = tags_page(&reg, &list).await;
    assert_eq!(tags, ["test0", "test1", "test2", "test3"]);
    assert_eq!(link, None);

    let (tags, link) = tags_page(&reg, &format!("{list}?n=2")).await;
    assert_eq!(tags, ["test0", "test1"]);
    let link = link.unwrap();
    assert_eq!(link, format!("<{list}?n=2&last=test1>; rel=\"next\""));

    // Following the link gives the rest.
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let (tags, link) = tags_page(&reg, next).await;
    assert_eq!(tags, ["test2", "test3"]);
    assert_eq!(
        link.as_deref(),
        Some(format!("<{list}?n=2&last=test3>; rel=\"next\"").as_str())
    );
    let (tags, link) = tags_page(&reg, &format!("{list}?n=2&last=test3")).await;
    assert!(tags.is_empty());
    assert_eq!(link, None);

    // `last` alone, a short last page, and n=0.
    let (tags, _) = tags_page(&reg, &format!("{list}?last=test1")).await;
    assert_eq!(tags, ["test2", "test3"]);
    let (tags, link) = tags_page(&reg, &format!("{list}?n=3&last=test1")).await;
    assert_eq!(tags, ["test2", "test3"]);
    assert_eq!(link, None);
    let (tags, link) = tags_page(&reg, &format!("{list}?n=0")).await;
    assert!(tags.is_empty());
    assert_eq!(link, None);

    assert_error(
        reg.get(&format!("{list}?n=many")).await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
    assert_error(
        reg.get("/v2/no/such/repo/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    let resp = reg
        .request(reqwest::Method::DELETE, &list)
        .send()
        .await
        .unwrap();
    let headers = assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    assert_eq!(headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn catalog_paginates() {
    let reg = Registry::start().await;
    for repo in ["c/three", "a/one", "b/two"] {
        reg.push_blob(repo, repo.as_bytes()).await;
    }
    let resp = reg.get("/v2/_catalog").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"repositories": ["a/one", "b/two", "c/three"]}));

    let resp = reg.get("/v2/_catalog?n=2").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "link"),
        "</v2/_catalog?n=2&last=b/two>; rel=\"next\""
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["repositories"], json!(["a/one", "b/two"]));

    let resp = reg.get("/v2/_catalog?n=2&last=b/two").await;
    assert!(resp.headers().get("link").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["repositories"], json!(["c/three"]));
}

#[tokio::test]
async fn referrers_list_filter_and_oci_subject() {
    let reg = Registry::start().await;
    let (subject, subject_digest) = reg.push_image(REPO, "base", "subject").await;
    let subject_ref = (&subject_digest, subject.len());
    let empty = reg.push_blob(REPO, b"{}").await;
    let sig_config = reg.push_blob(REPO, b"{\"sig\":true}").await;
    let sbom_layer = reg.push_blob(REPO, b"sbom contents").await;

    // Artifact type from the config's media type.
    let sig_type = "application/vnd.example.signature.v1+json";
    let sig = image_manifest(
        (sig_type, &sig_config, 12),
        &[],
        Some(subject_ref),
        None,
        Some("sig"),
    );
    // Artifact type from artifactType, with the empty config.
    let sbom_type = "application/vnd.example.sbom.v1";
    let sbom = image_manifest(
        (EMPTY_TYPE, &empty, 2),
        &[(&sbom_layer, 13)],
        Some(subject_ref),
        Some(sbom_type),
        Some("sbom"),
    );
    for (tagless, body) in [(true, &sig), (false, &sbom)] {
        let digest = sha256(body).to_string();
        let reference = if tagless { digest.as_str() } else { "sbom" };
        let resp = reg.put_manifest(REPO, reference, OCI_MANIFEST, body).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "oci-subject"), subject_digest.to_string());
        assert_eq!(header(&resp, "docker-content-digest"), digest);
    }

    let path = format!("/v2/{REPO}/referrers/{subject_digest}");
    let resp = reg.get(&path).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), OCI_INDEX);
    assert!(resp.headers().get("oci-filters-applied").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], OCI_INDEX);
    let manifests = body["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    for (bytes, artifact_type, note) in [(&sig, sig_type, "sig"), (&sbom, sbom_type, "sbom")] {
        let digest = sha256(bytes).to_string();
        let d = manifests
            .iter()
            .find(|m| m["digest"] == digest.as_str())
            .unwrap();
        assert_eq!(
            *d,
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": bytes.len(),
                "artifactType": artifact_type,
                "annotations": {"org.example.note": note},
            })
        );
    }

    let resp = reg.get(&format!("{path}?artifactType={sbom_type}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), OCI_INDEX);
    assert_eq!(header(&resp, "oci-filters-applied"), "artifactType");
    let body: Value = resp.json().await.unwrap();
    let manifests = body["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], sha256(&sbom).to_string());

    let resp = reg
        .get(&format!("{path}?artifactType=application/none"))
        .await;
    assert_eq!(header(&resp, "oci-filters-applied"), "artifactType");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["manifests"], json!([]));

    // No referrers, or an unknown repository: still 200 with an empty index.
    for path in [
        format!("/v2/{REPO}/referrers/{}", sha256(b"nothing refers to me")),
        format!("/v2/unknown/repo/referrers/{subject_digest}"),
    ] {
        let resp = reg.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-type"), OCI_INDEX);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        );
    }
    assert_error(
        reg.get(&format!("/v2/{REPO}/referrers/sha256:short")).await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
}

#[tokio::test]
async fn a_subject_need_not_exist() {
    let reg = Registry::start().await;
    let config = reg.push_blob(REPO, b"{}").await;
    let absent = sha256(b"a subject pushed later");
    let referrer = image_manifest(
        (CONFIG_TYPE, &config, 2),
        &[],
        Some((&absent, 123)),
        Some("application/vnd.example.note"),
        None,
    );
    let resp = reg
        .put_manifest(REPO, "note", OCI_MANIFEST, &referrer)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "oci-subject"), absent.to_string());

    let resp = reg.get(&format!("/v2/{REPO}/referrers/{absent}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["manifests"][0]["digest"],
        sha256(&referrer).to_string()
    );
    assert_eq!(
        body["manifests"][0]["artifactType"],
        "application/vnd.example.note"
    );
}
