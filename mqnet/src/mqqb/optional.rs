//! The UserMessage's rarer headers (MS-MQMQ 2.2.20.1-2.2.20.3, 2.2.20.7, 2.2.20.8): the
//! DebugHeader of a traced message, the SoapHeader of one sent over SRMP, and the
//! MultiQueueFormatHeader of one sent to several queues at once. Their types are in
//! [`super::user`]; this is their reading and writing, bounded like the rest.

use super::cursor::{wide_len, Malformed, Reader, Writer};
use super::user::{DebugHeader, MqfElement, MultiQueueFormat, SoapHeader};

pub(super) fn read_debug(r: &mut Reader<'_>) -> Result<DebugHeader, Malformed> {
    let flags = r.u16("DebugHeader.Flags")?;
    let reserved = r.u16("DebugHeader.Reserved")?;
    let queue = match flags & 3 {
        0 => None,
        1 => Some(r.guid("DebugHeader.QueueIdentifier")?),
        qt => return Err(r.bad(format!("DebugHeader queue type {qt}"))),
    };
    Ok(DebugHeader {
        flags,
        reserved,
        queue,
    })
}

/// SoapHeader section ids.
const SOAP_HEADER_ID: u16 = 0x0320;
const SOAP_BODY_ID: u16 = 0x0384;

pub(super) fn read_soap(r: &mut Reader<'_>) -> Result<SoapHeader, Malformed> {
    let start = r.pos();
    Ok(SoapHeader {
        header: read_soap_section(r, start, SOAP_HEADER_ID, "SoapHeader.Header")?,
        body: read_soap_section(r, start, SOAP_BODY_ID, "SoapHeader.Body")?,
    })
}

/// One section of a SoapHeader: id, reserved, length in characters (NUL included), text.
fn read_soap_section(
    r: &mut Reader<'_>,
    start: usize,
    id: u16,
    field: &str,
) -> Result<String, Malformed> {
    if r.u16(field)? != id {
        return Err(r.bad(format!("{field} section id is not 0x{id:04X}")));
    }
    r.u16(field)?;
    let text = match r.u32(field)? as usize {
        0 => String::new(),
        chars => r.wide(chars.saturating_mul(2), field)?,
    };
    r.align(start, 4, field)?;
    Ok(text)
}

pub(super) fn write_soap(w: &mut Writer<'_>, s: &SoapHeader) {
    let start = w.pos();
    for (id, text) in [(SOAP_HEADER_ID, &s.header), (SOAP_BODY_ID, &s.body)] {
        w.u16(id);
        w.u16(0);
        w.u32((wide_len(text) / 2) as u32);
        w.wide(text);
        w.align(start, 4);
    }
}

/// MQFAddressHeader ids.
const MQF_DESTINATION: u16 = 0x0064;
const MQF_ADMIN: u16 = 0x00C8;
const MQF_RESPONSE: u16 = 0x012C;
const MQF_SIGNATURE: u16 = 0x015E;

pub(super) fn read_multi_queue(r: &mut Reader<'_>) -> Result<MultiQueueFormat, Malformed> {
    let destinations = read_mqf_address(r, MQF_DESTINATION)?;
    let admin = read_mqf_address(r, MQF_ADMIN)?;
    let response = read_mqf_address(r, MQF_RESPONSE)?;
    if r.u16("MQFSignatureHeader.ID")? != MQF_SIGNATURE {
        return Err(r.bad("MQFSignatureHeader.ID is not 0x015E"));
    }
    r.u16("MQFSignatureHeader.Reserved")?;
    let size = r.u32("MQFSignatureHeader.Size")? as usize;
    let signature = r.take(size, "MQFSignatureHeader.Signature")?.to_vec();
    Ok(MultiQueueFormat {
        destinations,
        admin,
        response,
        signature,
    })
}

fn read_mqf_address(r: &mut Reader<'_>, id: u16) -> Result<Vec<MqfElement>, Malformed> {
    let start = r.pos();
    let size = r.u32("MQFAddressHeader.HeaderSize")? as usize;
    if size < 12 || size > r.remaining() + 4 {
        return Err(r.bad(format!("MQFAddressHeader.HeaderSize {size}")));
    }
    if r.u16("MQFAddressHeader.HeaderID")? != id {
        return Err(r.bad(format!("MQFAddressHeader.HeaderID is not 0x{id:04X}")));
    }
    r.u16("MQFAddressHeader.Reserved")?;
    let count = r.u32("MQFAddressHeader.ElementCount")?;
    // Each element takes at least 4 bytes: a larger count cannot fit, whatever it says.
    if count as usize > (size - 12) / 4 {
        return Err(r.bad(format!("{count} format names cannot fit in {size} bytes")));
    }
    let mut elements = Vec::new();
    for _ in 0..count {
        let kind = r.u16("MQFFormatNameElement.FormatType")?;
        elements.push(match kind {
            1 => {
                r.align(start, 4, "MQFFormatNameElement")?;
                MqfElement::Public(r.guid("PublicQueueFormatName")?)
            }
            2 => {
                r.align(start, 4, "MQFFormatNameElement")?;
                MqfElement::Private {
                    qm: r.guid("PrivateQueueFormatName")?,
                    id: r.u32("PrivateQueueFormatName")?,
                }
            }
            3 => {
                let name = read_nul_terminated(r, start + size)?;
                MqfElement::Direct(name)
            }
            6 => {
                r.align(start, 4, "MQFFormatNameElement")?;
                MqfElement::DistributionList(r.guid("MQFDistributionQueueFormatName")?)
            }
            k => return Err(r.bad(format!("format name type {k}"))),
        });
        r.align(start, 4, "MQFFormatNameElement")?;
    }
    if r.pos() > start + size {
        return Err(r.bad("format names run past MQFAddressHeader.HeaderSize"));
    }
    r.take(start + size - r.pos(), "MQFAddressHeader padding")?;
    Ok(elements)
}

/// A NUL-terminated UTF-16 string that must end by `limit`.
fn read_nul_terminated(r: &mut Reader<'_>, limit: usize) -> Result<String, Malformed> {
    let window = r.peek(limit.saturating_sub(r.pos()));
    let Some(nul) = window.chunks_exact(2).position(|c| c == [0, 0]) else {
        return Err(r.bad("a direct format name without its NUL"));
    };
    r.wide((nul + 1) * 2, "MQFDirectQueueFormatName")
}

pub(super) fn write_multi_queue(w: &mut Writer<'_>, m: &MultiQueueFormat) {
    let header = w.pos();
    for (id, list) in [
        (MQF_DESTINATION, &m.destinations),
        (MQF_ADMIN, &m.admin),
        (MQF_RESPONSE, &m.response),
    ] {
        let start = w.pos();
        w.u32(0);
        w.u16(id);
        w.u16(0);
        w.u32(list.len() as u32);
        for e in list {
            match e {
                MqfElement::Public(g) => {
                    w.u16(1);
                    w.align(start, 4);
                    w.guid(g);
                }
                MqfElement::Private { qm, id } => {
                    w.u16(2);
                    w.align(start, 4);
                    w.guid(qm);
                    w.u32(*id);
                }
                MqfElement::Direct(name) => {
                    w.u16(3);
                    w.wide(name);
                }
                MqfElement::DistributionList(g) => {
                    w.u16(6);
                    w.align(start, 4);
                    w.guid(g);
                }
            }
            w.align(start, 4);
        }
        let size = (w.pos() - start) as u32;
        w.out[start..start + 4].copy_from_slice(&size.to_le_bytes());
    }
    w.u16(MQF_SIGNATURE);
    w.u16(0);
    w.u32(m.signature.len() as u32);
    w.bytes(&m.signature);
    w.align(header, 4);
}
