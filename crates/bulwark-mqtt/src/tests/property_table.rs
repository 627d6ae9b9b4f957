//! Where each MQTT 5 property may appear (table 2-4), checked both ways:
//! the encoder refuses a property outside its packets, the decoder refuses
//! it as malformed.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};

use super::{decode_one, topic};
use crate::properties::PropertyContext;
use crate::{DecodeError as E, PacketType, Properties, PropertyId, ProtocolVersion, QoS};

/// A Properties value with only `id` set, to a valid value.
pub(super) fn only(id: PropertyId) -> Properties {
    use PropertyId as P;
    let mut p = Properties::default();
    match id {
        P::PayloadFormatIndicator => p.payload_format_indicator = Some(crate::PayloadFormat::Utf8),
        P::MessageExpiryInterval => p.message_expiry_interval = Some(5),
        P::ContentType => p.content_type = Some("c".into()),
        P::ResponseTopic => p.response_topic = Some(topic("r")),
        P::CorrelationData => p.correlation_data = Some(Bytes::from_static(b"c")),
        P::SubscriptionIdentifier => p.subscription_identifiers = vec![9],
        P::SessionExpiryInterval => p.session_expiry_interval = Some(1),
        P::AssignedClientIdentifier => p.assigned_client_identifier = Some("a".into()),
        P::ServerKeepAlive => p.server_keep_alive = Some(5),
        P::AuthenticationMethod => p.authentication_method = Some("m".into()),
        P::AuthenticationData => {
            p.authentication_method = Some("m".into());
            p.authentication_data = Some(Bytes::from_static(b"d"));
        }
        P::RequestProblemInformation => p.request_problem_information = Some(true),
        P::WillDelayInterval => p.will_delay_interval = Some(3),
        P::RequestResponseInformation => p.request_response_information = Some(true),
        P::ResponseInformation => p.response_information = Some("i".into()),
        P::ServerReference => p.server_reference = Some("s".into()),
        P::ReasonString => p.reason_string = Some("why".into()),
        P::ReceiveMaximum => p.receive_maximum = NonZeroU16::new(4),
        P::TopicAliasMaximum => p.topic_alias_maximum = Some(4),
        P::TopicAlias => p.topic_alias = NonZeroU16::new(4),
        P::MaximumQoS => p.maximum_qos = Some(QoS::AtMostOnce),
        P::RetainAvailable => p.retain_available = Some(true),
        P::UserProperty => {
            p.user_properties = vec![crate::UserProperty {
                name: "n".into(),
                value: "v".into(),
            }]
        }
        P::MaximumPacketSize => p.maximum_packet_size = std::num::NonZeroU32::new(100),
        P::WildcardSubscriptionAvailable => p.wildcard_subscription_available = Some(false),
        P::SubscriptionIdentifierAvailable => p.subscription_identifier_available = Some(false),
        P::SharedSubscriptionAvailable => p.shared_subscription_available = Some(false),
    }
    p
}

#[test]
fn each_property_only_where_the_spec_allows_it() {
    let contexts = [
        PropertyContext::Will,
        PropertyContext::CONNECT,
        PropertyContext::CONNACK,
        PropertyContext::PUBLISH,
        PropertyContext::Packet(PacketType::PubAck),
        PropertyContext::SUBSCRIBE,
        PropertyContext::Packet(PacketType::UnsubAck),
        PropertyContext::DISCONNECT,
        PropertyContext::AUTH,
    ];
    let mut allowed = 0;
    for &id in PropertyId::ALL {
        let props = only(id);
        for ctx in contexts {
            let expected = id.allowed_in(ctx);
            allowed += usize::from(expected);
            let got = props.encoded_len(ctx);
            assert_eq!(got.is_ok(), expected, "{id} in {ctx}: {got:?}");
        }
        // Decoding: a DISCONNECT carrying the property.
        let mut body = BytesMut::from(&[0x00][..]);
        props.write(&mut body);
        let mut bytes = vec![0xE0, u8::try_from(body.len()).unwrap()];
        bytes.extend_from_slice(&body);
        let got = decode_one(Some(ProtocolVersion::V5), &bytes);
        if id.allowed_in(PropertyContext::DISCONNECT) {
            assert!(got.is_ok(), "{id}: {got:?}");
        } else {
            let first_refused = if id == PropertyId::AuthenticationData {
                PropertyId::AuthenticationMethod
            } else {
                id
            };
            assert_eq!(
                got,
                Err(E::PropertyNotAllowed {
                    property: first_refused,
                    context: PropertyContext::DISCONNECT
                })
            );
        }
    }
    // Table 2-4 of MQTT 5, counted over the contexts above.
    assert_eq!(allowed, 55);
}
