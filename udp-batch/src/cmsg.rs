//! The one control message the batched sends write: UDP_SEGMENT, which turns a message of many
//! buffers into as many datagrams of one size (UDP GSO, Linux 4.18+).

/// `setsockopt`/cmsg type of UDP generic segmentation offload, at `IPPROTO_UDP`.
const UDP_SEGMENT: libc::c_int = 103;

/// One `UDP_SEGMENT` cmsg giving the segment size, in a buffer aligned for `cmsghdr`. Point
/// `msg_control` at [`SegmentCmsg::as_mut_ptr`] with `msg_controllen` = [`SegmentCmsg::LEN`].
#[derive(Clone, Copy, Default)]
pub(crate) struct SegmentCmsg([u64; 4]);

impl SegmentCmsg {
    /// CMSG_SPACE(2) on Linux: a 16-byte header and the u16, padded to 8 bytes.
    pub(crate) const LEN: usize = 24;

    pub(crate) fn write(&mut self, segment_size: u16) {
        // SAFETY: a msghdr whose control buffer is ours, 32 bytes, at least CMSG_SPACE(2)
        // (asserted by a test); the CMSG_* helpers stay inside it.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_control = self.0.as_mut_ptr().cast();
            msg.msg_controllen = Self::LEN as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::IPPROTO_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment_size);
        }
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.0.as_mut_ptr().cast()
    }
}

#[cfg(test)]
mod tests {
    use super::SegmentCmsg;

    #[test]
    fn the_buffer_holds_exactly_the_space_the_kernel_expects() {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(2) } as usize;
        assert_eq!(SegmentCmsg::LEN, space);
        assert!(std::mem::size_of::<SegmentCmsg>() >= space);
    }
}
