//! The interfaces to attach to when none are named: every one that is up, in this thread's
//! network namespace (so not /sys/class/net, which shows the namespace sysfs was mounted in).

use std::ffi::CStr;

use super::OffloadError;

pub(crate) fn up_interfaces() -> Result<Vec<String>, OffloadError> {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns a heap array ending in a zeroed entry, or null on failure;
    // it is read only up to that entry and freed once with if_freenameindex.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Err(OffloadError::Interface(format!(
                "listing interfaces failed: {}",
                std::io::Error::last_os_error()
            )));
        }
        let mut entry = list;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            names.push(CStr::from_ptr((*entry).if_name).to_string_lossy().into_owned());
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    let mut up = Vec::new();
    for name in names {
        if is_up(&name)? {
            up.push(name);
        }
    }
    Ok(up)
}

/// The index of the interface `name` in this thread's network namespace.
pub(crate) fn index(name: &str) -> Result<u32, OffloadError> {
    let c = std::ffi::CString::new(name).map_err(|_| OffloadError::Interface(format!("{name:?}: not a name")))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(OffloadError::Interface(format!("{name}: no such interface")));
    }
    Ok(index)
}

fn is_up(name: &str) -> Result<bool, OffloadError> {
    let req = query(name, libc::SIOCGIFFLAGS)
        .map_err(|e| OffloadError::Interface(format!("reading the flags of {name}: {e}")))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(flags & libc::IFF_UP as libc::c_short != 0)
}

/// One `SIOCGIF*` ioctl on the interface `name`; the caller reads the union member it asked for.
pub(crate) fn query(name: &str, request: libc::c_ulong) -> std::io::Result<libc::ifreq> {
    // SAFETY: a plain socket(2) call; the descriptor is closed below on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    // SAFETY: the SIOCGIF* requests read the NUL-terminated name in req and write one member of
    // its union, all within the struct.
    let rc = unsafe { libc::ioctl(fd, request, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours and still open.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(err);
    }
    Ok(req)
}
