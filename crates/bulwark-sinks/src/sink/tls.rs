//! The TLS client configuration of the syslog transport: only the
//! configured CA file's certificates are trusted (never the system roots),
//! with an optional client certificate for mutual TLS. aws-lc-rs is the
//! crypto provider, as everywhere in Bulwark.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::SinkError;

fn read(name: &str, path: &Path) -> Result<Vec<u8>, SinkError> {
    std::fs::read(path).map_err(|source| SinkError::ReadFile {
        sink: name.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn certs(name: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SinkError> {
    let pem = read(name, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SinkError::config(name, format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SinkError::config(
            name,
            format!("{} holds no certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// A client configuration trusting exactly the certificates in `ca_file`.
pub(crate) fn client_config(
    name: &str,
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, SinkError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(name, ca_file)? {
        roots.add(cert).map_err(|e| {
            SinkError::config(name, format!("ca_file holds an unusable certificate: {e}"))
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::Tls {
            what: "no usable protocol version".to_owned(),
            source: Some(e),
        })?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain = certs(name, cert_file)?;
            let key = PrivateKeyDer::from_pem_slice(&read(name, key_file)?).map_err(|e| {
                SinkError::config(
                    name,
                    format!("{} is not a PEM private key: {e}", key_file.display()),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SinkError::Tls {
                    what: "the client certificate and key do not form an identity".to_owned(),
                    source: Some(e),
                })?
        }
    };
    Ok(Arc::new(config))
}
