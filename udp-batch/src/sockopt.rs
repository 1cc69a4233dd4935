//! `setsockopt` for the options `socket2` does not offer (a reuseport steering program, the DF
//! bit's path-MTU mode), so that callers need no `unsafe` of their own for them.

use std::io;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;

/// Sets option `name` at `level` on `socket` to `value`, a plain-data value of the type the
/// kernel expects for that option (the kernel copies `size_of::<T>()` bytes from it).
pub fn set_option<T: Copy>(socket: &impl AsFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the fd is live for the borrow of `socket`; `value` points to a T of `len` bytes,
    // alive for the call (the kernel copies it and never writes through the pointer).
    let rc = unsafe { libc::setsockopt(socket.as_fd().as_raw_fd(), level, name, (value as *const T).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    fn get_int(socket: &UdpSocket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are live and sized for an int option.
        let rc =
            unsafe { libc::getsockopt(socket.as_raw_fd(), level, name, (&mut value as *mut i32).cast(), &mut len) };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }

    #[test]
    fn an_option_set_reads_back_and_a_bad_one_is_refused() {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        set_option(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &libc::IP_PMTUDISC_DO).expect("set");
        assert_eq!(get_int(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER), libc::IP_PMTUDISC_DO);
        let e = set_option(&s, libc::SOL_SOCKET, -1, &1i32).expect_err("no such option");
        assert_eq!(e.raw_os_error(), Some(libc::ENOPROTOOPT));
    }
}
