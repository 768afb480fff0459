//! C2PA on real MP4s: signed with a development CA generated here (c2pa refuses self-signed leaves), then
//! trusted when untouched, invalid after a one-byte change, absent after a remux, merely valid under other anchors.
#![allow(clippy::unwrap_used, missing_docs)]

use vidmesh_provenance::{Claim, Provenance, Signer, verify_mp4};
use vidmesh_video::{EncodeOptions, Video, decode_video, encode_mp4};

use rcgen::{CertificateParams, DnType, KeyPair};
use vidmesh_provenance::Chain as Pki;

fn dev_pki(name: &str) -> Pki {
    Pki::issue(&format!("{name} signer"), "vidmesh tests").unwrap()
}

fn mp4() -> Vec<u8> {
    let frames = (0..8).map(|t| vec![(t * 20) as u8; 64 * 64 * 3]).collect();
    encode_mp4(&Video { width: 64, height: 64, fps: 8.0, frames }, &EncodeOptions::default()).unwrap()
}

fn claim() -> Claim {
    Claim {
        model: "vidmesh-tiny".into(),
        model_version: "0.1.0".into(),
        parameters: serde_json::json!({ "seed": 42, "steps": 30, "guidance": 5.0, "frames": 8 }),
        prompt_sha256: "ab".repeat(32),
    }
}

#[test]
fn signed_mp4s_verify_and_tampering_shows() {
    let pki = dev_pki("vidmesh");
    let signer = Signer::new(pki.chain.as_bytes(), pki.key.as_bytes(), pki.anchor.as_bytes()).unwrap();
    let original = mp4();
    let signed = signer.sign_mp4(&original, "video.mp4", &claim()).unwrap();
    assert!(signed.len() > original.len());
    assert_eq!(decode_video(&signed).unwrap().frames.len(), 8, "still a playable MP4");

    match verify_mp4(&signed, pki.anchor.as_bytes()) {
        Provenance::Trusted(s) => {
            assert_eq!(s.claim, Some(claim()));
            assert_eq!(s.signer.as_deref(), Some("vidmesh signer (vidmesh tests)"));
        }
        other => panic!("expected trusted with the claim, got {other:?}"),
    }
    let other = dev_pki("someone else");
    assert!(matches!(verify_mp4(&signed, other.anchor.as_bytes()), Provenance::Valid(_)), "unknown signer");

    // One byte changed in the media data: the hash binding fails.
    let mut tampered = signed.clone();
    let mdat = tampered.windows(4).rposition(|w| w == b"mdat").unwrap();
    tampered[mdat + 100] ^= 0x01;
    assert!(matches!(verify_mp4(&tampered, pki.anchor.as_bytes()), Provenance::Invalid(_)));

    // A remux (decode + re-encode) drops the manifest.
    let remuxed = encode_mp4(&decode_video(&signed).unwrap(), &EncodeOptions::default()).unwrap();
    assert_eq!(verify_mp4(&remuxed, pki.anchor.as_bytes()), Provenance::Absent);
    assert_eq!(verify_mp4(&original, pki.anchor.as_bytes()), Provenance::Absent);
}

#[test]
fn unusable_keys_are_refused() {
    let pki = dev_pki("vidmesh");
    assert!(Signer::new(b"not a certificate", pki.key.as_bytes(), pki.anchor.as_bytes()).is_err());
    // A self-signed leaf (the CA itself as signer) is refused by C2PA, with a message that says what is needed.
    let ca_only = dev_pki("ca");
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "self-signed");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let err = Signer::new(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), ca_only.anchor.as_bytes());
    let Err(err) = err else { panic!("self-signed leaf accepted") };
    assert!(err.to_string().contains("CA-issued leaf"), "{err}");
}
