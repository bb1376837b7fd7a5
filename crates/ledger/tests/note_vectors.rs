//! Published signed-note and checkpoint examples.
//!
//! Sources (values read and re-typed here):
//! - golang/mod `sumdb/note/note_test.go` (`TestNewVerifier`, `TestNewSigner`, `TestSign`,
//!   `TestOpen`): the PeterNeumann and EnochRoot keys and their signatures of the same text.
//! - sigsum/sigsum-go `pkg/checkpoint/checkpoint_test.go` (`TestGoSumDBCheckpoint`): a real
//!   checkpoint fetched from sum.golang.org, and that log's public key as Go ships it.
//! - C2SP `tlog-checkpoint.md` and `signed-note.md`: the examples in the specifications.

use sealtrail_ledger::{
    key_id, open_checkpoint, open_note, sign_checkpoint, sign_note, Checkpoint, CheckpointError,
    KeyError, NoteError, NoteSigner, NoteVerifier, NOTE_SIGNATURES_MAX,
};

const PETER_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SIGNER: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VERIFIER: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIGNATURE_LINE: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIGNATURE_LINE: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> NoteVerifier {
    NoteVerifier::parse(PETER_VERIFIER).unwrap()
}

fn enoch() -> NoteVerifier {
    NoteVerifier::parse(ENOCH_VERIFIER).unwrap()
}

fn signed_by_peter() -> String {
    format!("{TEXT}\n{PETER_SIGNATURE_LINE}")
}

#[test]
fn published_verifier_keys_parse_with_their_key_ids() {
    let peter = peter();
    assert_eq!(peter.name(), "PeterNeumann");
    assert_eq!(peter.key_id(), 0xc74f20a3);
    assert_eq!(key_id("PeterNeumann", &peter.public_key()), 0xc74f20a3);
    assert_eq!(peter.verifier_key(), PETER_VERIFIER);
    assert_eq!(enoch().key_id(), 0xaf0cfe78);
    assert_eq!(enoch().verifier_key(), ENOCH_VERIFIER);
}

#[test]
fn the_published_private_key_yields_the_published_key_and_signature() {
    let signer = NoteSigner::parse(PETER_SIGNER).unwrap();
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.verifier().verifier_key(), PETER_VERIFIER);
    assert_eq!(signer.signer_key(), PETER_SIGNER);
    // Ed25519 is deterministic, so signing the same text reproduces the published note.
    assert_eq!(sign_note(TEXT, &signer).unwrap(), signed_by_peter());
}

#[test]
fn published_mangled_keys_are_rejected() {
    // Wrong key length, with a key ID adjusted to match.
    assert!(NoteVerifier::parse(
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
    )
    .is_err());
    // Unknown algorithm byte, with a key ID adjusted to match.
    assert_eq!(
        NoteVerifier::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(KeyError::UnsupportedAlgorithm(0x65))
    );
    // Every strict substring and every single-byte change of the published keys fails.
    for key in [PETER_VERIFIER, PETER_SIGNER] {
        let parse = |text: &str| {
            if key == PETER_SIGNER {
                NoteSigner::parse(text).map(|_| ())
            } else {
                NoteVerifier::parse(text).map(|_| ())
            }
        };
        for start in 0..key.len() {
            for end in start + 1..=key.len() {
                if (start, end) != (0, key.len()) {
                    assert!(parse(&key[start..end]).is_err(), "{}", &key[start..end]);
                }
            }
        }
        let mut bytes = key.as_bytes().to_vec();
        for position in 0..bytes.len() {
            bytes[position] += 1;
            let mangled = String::from_utf8(bytes.clone()).unwrap();
            assert!(parse(&mangled).is_err(), "{mangled}");
            bytes[position] -= 1;
        }
    }
}

#[test]
fn the_published_note_opens() {
    let opened = open_note(&signed_by_peter(), &[peter()]).unwrap();
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.verified[0].name, "PeterNeumann");
    assert_eq!(opened.verified[0].key_id, 0xc74f20a3);
    assert!(opened.unverified.is_empty());
}

#[test]
fn the_published_cosigned_note_opens_with_either_or_both_keys() {
    let note = format!("{TEXT}\n{PETER_SIGNATURE_LINE}{ENOCH_SIGNATURE_LINE}");
    let opened = open_note(&note, &[peter()]).unwrap();
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.unverified.len(), 1);
    assert_eq!(opened.unverified[0].name, "EnochRoot");
    assert_eq!(opened.unverified[0].key_id, 0xaf0cfe78);

    let opened = open_note(&note, &[peter(), enoch()]).unwrap();
    let names: Vec<&str> = opened.verified.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["PeterNeumann", "EnochRoot"]);

    assert_eq!(open_note(&note, &[]), Err(NoteError::NoKnownSignature));
    assert_eq!(
        open_note(
            &format!("{TEXT}\n{ENOCH_SIGNATURE_LINE}"),
            &[enoch(), peter(), enoch()]
        ),
        Err(NoteError::AmbiguousKey {
            name: "EnochRoot".into(),
            key_id: 0xaf0cfe78
        })
    );
    // A duplicated verifier that no signature needs is harmless.
    open_note(&signed_by_peter(), &[enoch(), peter(), enoch()]).unwrap();
}

#[test]
fn published_duplicate_and_corrupt_signatures() {
    let corrupt = |line: &str| format!("{}ABCD{}", &line[..60], &line[60..]);
    // A corrupt signature from a known key rejects the note.
    assert_eq!(
        open_note(
            &format!("{TEXT}\n{}", corrupt(PETER_SIGNATURE_LINE)),
            &[peter()]
        ),
        Err(NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );
    // Repeated signatures are dropped; an unknown key's corrupt signature is only unverified.
    let note = format!(
        "{TEXT}\n{PETER_SIGNATURE_LINE}{PETER_SIGNATURE_LINE}{ENOCH_SIGNATURE_LINE}{ENOCH_SIGNATURE_LINE}{}",
        corrupt(ENOCH_SIGNATURE_LINE)
    );
    let opened = open_note(&note, &[peter()]).unwrap();
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.unverified.len(), 2);
    // Too many signature lines are refused before any is checked.
    let many = format!(
        "{TEXT}\n{}",
        PETER_SIGNATURE_LINE.repeat(NOTE_SIGNATURES_MAX + 1)
    );
    assert_eq!(
        open_note(&many, &[peter()]),
        Err(NoteError::TooManySignatures)
    );
    assert_eq!(open_note(&many, &[]), Err(NoteError::TooManySignatures));
}

#[test]
fn published_malformed_notes_are_rejected() {
    let signature = PETER_SIGNATURE_LINE;
    let bad = [
        TEXT.to_string(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &signature[..signature.len() - 1]),
        format!("\u{1}{TEXT}\n{signature}"),
        format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{TEXT}\n{signature}Unexpected line.\n"),
    ];
    for note in bad {
        assert!(open_note(&note, &[peter()]).is_err(), "accepted {note:?}");
    }
}

#[test]
fn a_real_sum_golang_org_checkpoint_opens() {
    let note = "go.sum database tree\n30055305\nmXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=\n\n\
                — sum.golang.org Az3grpgEild5qw7+5dtV13Kf1C2Xurm8q4fhdxvcsDHnqNTaxL2AFjBY+2TyGKevucFcAAlWFJJYle3EJlDCrQ+y3A8=\n";
    let verifier =
        NoteVerifier::parse("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")
            .unwrap();
    // The key name differs from the origin (which has spaces): the origin, not the key, names
    // the log.
    let checkpoint = open_checkpoint(
        note,
        std::slice::from_ref(&verifier),
        "go.sum database tree",
    )
    .unwrap();
    assert_eq!(checkpoint.tree_size, 30_055_305);
    assert_eq!(
        hex::encode(checkpoint.root_hash),
        "9977e045c2746c6d23dc23dd2b08065ad5330546d7ebbb1a64646616e2461ac3"
    );
    assert!(checkpoint.extensions.is_empty());
    let body = note.split_once("\n\n").unwrap().0.to_string() + "\n";
    assert_eq!(checkpoint.format_body().unwrap(), body);
    assert!(matches!(
        open_checkpoint(
            &note.replace("30055305", "30055306"),
            &[verifier],
            "go.sum database tree"
        ),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
}

#[test]
fn the_specification_examples_parse() {
    // tlog-checkpoint's example: its key is not published, so only the parse is checked.
    let checkpoint_note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
                           — example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
    let body = checkpoint_note.split_once("\n\n").unwrap().0.to_string() + "\n";
    let checkpoint = Checkpoint::parse_body(&body).unwrap();
    assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
    assert_eq!(checkpoint.tree_size, 20_852_163);
    assert_eq!(checkpoint.format_body().unwrap(), body);
    assert_eq!(
        open_note(checkpoint_note, &[]),
        Err(NoteError::NoKnownSignature)
    );

    // signed-note's example: a text with a blank line and non-ASCII letters is well-formed.
    let note = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n\
                — quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";
    assert_eq!(open_note(note, &[]), Err(NoteError::NoKnownSignature));
}

#[test]
fn sealtrail_checkpoints_round_trip_through_the_published_key() {
    let signer = NoteSigner::parse(PETER_SIGNER).unwrap();
    let checkpoint = Checkpoint::new("sealtrail/acme", 8, [0x5d; 32]);
    let note = sign_checkpoint(&checkpoint, &signer).unwrap();
    assert_eq!(
        open_checkpoint(&note, &[signer.verifier()], "sealtrail/acme"),
        Ok(checkpoint)
    );
}
